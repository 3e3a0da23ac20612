"""``nmt-evaluate``: translate test sets, score them with sacrebleu, and dump attention and word alignments.

Examples::

    nmt-evaluate --checkpoint runs/x/checkpoints/best.pt    # the test sets of the checkpoint's config
    nmt-evaluate -c best.pt --src test.de --ref test.en --dump-dir dumps --heatmaps 5
    nmt-evaluate -c best.pt --src deen.de.gz --ref deen.en.gz --gold-alignments deen.talp.gz --gold-base 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nmt.cli.common import (
    add_alignment_flags,
    add_deprecated,
    add_running_flags,
    add_search_flags,
    new_parser,
    resolve_device,
    run_cli,
    search_overrides,
    setup_logging,
)
from nmt.errors import NMTError

PROG = "nmt-evaluate"

EPILOG = """\
outputs (in --output-dir, default: <checkpoint>.eval/ beside the first checkpoint):
  NAME.hyp              the best translation of every source line
  NAME.buckets.txt/png  BLEU by source length (whitespace words: 0-10, 10-20, ..., 50+)
  results.json          BLEU, chrF, their sacrebleu signatures, buckets and AER for every set

dumps (--dump-dir DIR):
  NAME.attention.npz    every sentence's attention, (output pieces + EOS) x (source pieces + EOS), with the
                        pieces; np.load(..., allow_pickle=False) reads it (format: nmt.analysis.attention)
  NAME.align            Pharaoh word alignments (0-based "src-tgt"; see nmt-translate --help)
  NAME.heatmaps/N.png   heatmaps of the first --heatmaps sentences

gold alignments (--gold-alignments FILE, "i-j" sure and "ipj" possible links; --gold-base 1 for 1-based files):
  AER, precision and recall of the model's word alignments, over the sentences whose output equals the
  reference word for word (only there do the gold links describe the same pair of sentences).
"""


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(
        PROG, "Evaluate nmt checkpoints: BLEU/chrF with signatures, length buckets, attention dumps, AER.", EPILOG
    )
    p.add_argument("--checkpoint", "-c", nargs="+", required=True, metavar="CKPT", help="one or more (ensemble)")
    p.add_argument("--src", metavar="FILE", help="source sentences (plain or .gz); default: the config's test sets")
    p.add_argument("--ref", metavar="FILE", help="reference translations, line-aligned with --src")
    p.add_argument("--data-dir", metavar="DIR", help="data root for the configured test sets (default $NMT_DATA_DIR)")
    p.add_argument("--output-dir", "-o", metavar="DIR", help="where hypotheses and scores go")
    s = p.add_argument_group("search (defaults: the checkpoint's search config)")
    p.set_defaults(search_fields=add_search_flags(s, exclude=NOT_FOR_EVALUATION))
    add_deprecated(s, "--max-tokens", "--batch-tokens", dest="batch_tokens", type=int, metavar="N")
    s.add_argument(
        "--max-source-len", type=int, metavar="N", help="truncate longer sources (default: the checkpoint's max_len)"
    )
    m = p.add_argument_group("scores")
    m.add_argument("--tokenize", metavar="TOK", help="sacrebleu BLEU tokenizer: 13a (default), none, intl, char, ...")
    m.add_argument("--lowercase", action="store_true", help="case-insensitive BLEU and chrF")
    a = p.add_argument_group("attention and alignments")
    a.add_argument("--dump-dir", metavar="DIR", help="write attention matrices, heatmaps and word alignments here")
    a.add_argument("--heatmaps", type=int, default=10, metavar="N", help="heatmaps for the first N sentences")
    a.add_argument("--gold-alignments", metavar="FILE", help="gold Pharaoh links for --src/--ref, for AER")
    a.add_argument("--gold-base", type=int, choices=[0, 1], default=1, help="index base of the gold file")
    add_alignment_flags(a, threshold=False)
    add_deprecated(a, "--align-layer", "--alignment-layer", dest="alignment_layer", type=int)
    add_deprecated(a, "--align-heads", "--alignment-heads", dest="alignment_heads", type=int, nargs="+")
    r = p.add_argument_group("running")
    add_running_flags(r)
    r.add_argument("--quiet", "-q", action="store_true", help="print only the scores")
    return p


# One best hypothesis per sentence is scored: these search fields do not apply.
NOT_FOR_EVALUATION = ("nbest", "sampling", "sampling_topk", "sampling_topp", "sampling_temperature")


def evaluate(args: argparse.Namespace) -> int:
    import torch

    from nmt.config import to_dict
    from nmt.evaluate import format_buckets, plot_buckets
    from nmt.report import load_test_sets, report_set, results_document, write_json
    from nmt.translate import Translator

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    want_attention = args.dump_dir is not None or args.gold_alignments is not None
    if args.gold_alignments and args.src is None:
        raise NMTError("--gold-alignments needs --src and --ref (the sentence pairs the gold links describe)")
    overrides = search_overrides(args, args.search_fields)
    translator = Translator.from_checkpoints(
        args.checkpoint,
        device=resolve_device(args.device),
        search={"nbest": 1, "sampling": False, **overrides},
        max_source_len=args.max_source_len,
        need_attention=want_attention,
        alignment_layer=args.alignment_layer,
        alignment_heads=args.alignment_heads,
        precision=args.precision,
    )
    ckpt = Path(args.checkpoint[0])
    out_dir = Path(args.output_dir) if args.output_dir else ckpt.with_name(ckpt.stem + ".eval")
    reports = []
    for data in load_test_sets(translator.config, src=args.src, ref=args.ref, data_dir=args.data_dir):
        report = report_set(
            translator,
            data,
            hypotheses_file=out_dir / f"{data.name}.hyp",
            relative_to=out_dir,
            tokenize=args.tokenize,
            lowercase=args.lowercase,
            dump_dir=Path(args.dump_dir) if args.dump_dir else None,
            heatmaps=args.heatmaps,
            gold=args.gold_alignments,
            gold_base=args.gold_base,
        )
        reports.append(report)
        buckets = format_buckets(report.buckets)
        (out_dir / f"{data.name}.buckets.txt").write_text(buckets + "\n", encoding="utf-8")
        plot_buckets(report.buckets, out_dir / f"{data.name}.buckets.png", title=f"{data.name}: BLEU by source length")
        scores = report.scores
        print(f"{data.name}: BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}  ({len(report.hypotheses)} sentences)")
        print(f"  BLEU signature: {scores.bleu_signature}\n  chrF signature: {scores.chrf_signature}")
        a = report.alignment
        if a is not None and a["aer"] is not None:
            precision, recall = (f"{a[k]:.4f}" if a[k] is not None else "n/a" for k in ("precision", "recall"))
            print(
                f"  AER {a['aer']:.4f} (precision {precision}, recall {recall}) over "
                f"{a['sentences']} of {a['of']} sentences (output = reference)"
            )
        elif a is not None and a["sentences"]:
            print(f"  AER: no link to score on the {a['sentences']} sentences translated exactly as their reference")
        elif a is not None:
            print(f"  AER: no sentence of {a['of']} was translated exactly as its reference")
        if not args.quiet:
            print("  " + buckets.replace("\n", "\n  "))
    results = results_document(checkpoints=args.checkpoint, search=to_dict(translator.cfg), dev=None, test=reports)
    write_json(out_dir / "results.json", results)
    if not args.quiet:
        print(f"results: {out_dir / 'results.json'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, quiet=args.quiet)
    return run_cli(PROG, lambda: evaluate(args))


if __name__ == "__main__":
    sys.exit(main())

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
    add_bucket_flags,
    add_deprecated,
    add_running_flags,
    add_search_flags,
    check_bucket_flags,
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
  NAME.buckets.txt/png  BLEU by source length (whitespace words: 0-5, 5-10, ..., 25+; --bucket-width,
                        --last-bucket), with the sentences and a 95% bootstrap interval (1,000 resamples) per bucket
  results.json          BLEU (with sacrebleu's n-gram precisions, brevity penalty, length ratio and lengths), chrF,
                        their signatures, decoding time, buckets and AER for every set

printed per set: a progress bar while translating (on a terminal), the decoding time and speed, BLEU and chrF,
sacrebleu's full BLEU line (signature = score precisions (BP, ratio, hyp_len, ref_len)) and chrF line, the buckets.

dumps (--dump-dir DIR):
  NAME.attention.npz    every sentence's attention, (output pieces + EOS) x (source pieces + EOS), with the
                        pieces; np.load(..., allow_pickle=False) reads it (format: nmt.analysis.attention)
  NAME.align            Pharaoh word alignments (0-based "src-tgt"; see nmt-translate --help)
  NAME.heatmaps/N.png   heatmaps of the first --heatmaps sentences

gold alignments (--gold-alignments FILE, "i-j" sure and "ipj" possible links; --gold-base 1 for 1-based files):
  AER, precision and recall of forced alignments: every (source, reference) pair is teacher-forced through the
  model and its cross-attention read, as nmt-align does (method shift, or for a checkpoint trained with guided
  alignment the rows it was trained on; --alignment-layer / --alignment-heads), so every gold sentence counts.
  results.json's "alignment" names the method ("forced (shift)") and the pairs scored.
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
    add_bucket_flags(m)
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
    want_attention = args.dump_dir is not None  # gold alignments teacher-force the references instead
    if args.gold_alignments and args.src is None:
        raise NMTError("--gold-alignments needs --src and --ref (the sentence pairs the gold links describe)")
    check_bucket_flags(args)
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
        bar = _progress_bar(args, data.name, len(data.sources))
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
            progress=bar.update if bar is not None else None,
            bucket_width=args.bucket_width,
            last_bucket=args.last_bucket,
        )
        if bar is not None:
            bar.close()
        reports.append(report)
        buckets = format_buckets(report.buckets)
        (out_dir / f"{data.name}.buckets.txt").write_text(buckets + "\n", encoding="utf-8")
        plot_buckets(report.buckets, out_dir / f"{data.name}.buckets.png", title=f"{data.name}: BLEU by source length")
        print_report(report, quiet=args.quiet)
    results = results_document(checkpoints=args.checkpoint, search=to_dict(translator.cfg), dev=None, test=reports)
    write_json(out_dir / "results.json", results)
    if not args.quiet:
        print(f"results: {out_dir / 'results.json'}", file=sys.stderr)
    return 0


def _progress_bar(args: argparse.Namespace, name: str, total: int):
    """A tqdm bar of the set's sentences on stderr when it is a terminal (advanced after each batch), else None."""
    if args.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=" sent", desc=f"{PROG}: {name}", file=sys.stderr, dynamic_ncols=True, leave=False)


def print_report(report, *, quiet: bool = False) -> None:
    """One set's scores on stdout: BLEU, chrF, sacrebleu's full lines, decoding time, AER, and the buckets."""
    from nmt.evaluate import format_buckets

    scores, n, seconds = report.scores, len(report.hypotheses), report.decode_seconds
    print(f"{report.name}: BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}  ({n} sentences)")
    print(f"  BLEU signature: {scores.bleu_signature}\n  chrF signature: {scores.chrf_signature}")
    print("  " + scores.report().replace("\n", "\n  "))
    print(f"  decoded in {seconds:.2f} s ({n / max(seconds, 1e-9):.1f} sentences/s)")
    a = report.alignment
    if a is not None and a["aer"] is not None:
        precision, recall = (f"{a[k]:.4f}" if a[k] is not None else "n/a" for k in ("precision", "recall"))
        print(
            f"  AER {a['aer']:.4f} (precision {precision}, recall {recall}), {a['method']} "
            f"alignment of all {a['sentences']} (source, reference) pairs"
        )
    elif a is not None:
        print(f"  AER: no link to score in {a['of']} pairs (gold file and forced alignments both empty)")
    if not quiet:
        print("  " + format_buckets(report.buckets).replace("\n", "\n  "))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, quiet=args.quiet)
    return run_cli(PROG, lambda: evaluate(args))


if __name__ == "__main__":
    sys.exit(main())

"""``nmt-evaluate``: translate test sets, score them with sacrebleu, and dump attention and word alignments.

Examples::

    nmt-evaluate --checkpoint runs/x/checkpoints/best.pt    # the test sets of the checkpoint's config
    nmt-evaluate -c best.pt --src test.de --ref test.en --dump-dir dumps --heatmaps 5
    nmt-evaluate -c best.pt --src deen.de.gz --ref deen.en.gz --gold-alignments deen.talp.gz --gold-base 1
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from nmt.cli.common import resolve_device, run_cli, setup_logging
from nmt.config import EarlyStop
from nmt.errors import DataError, NMTError

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
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate nmt checkpoints: BLEU/chrF with signatures, length buckets, attention dumps, AER.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", "-c", nargs="+", required=True, metavar="CKPT", help="one or more (ensemble)")
    p.add_argument("--src", metavar="FILE", help="source sentences (plain or .gz); default: the config's test sets")
    p.add_argument("--ref", metavar="FILE", help="reference translations, line-aligned with --src")
    p.add_argument("--data-dir", metavar="DIR", help="data root for the configured test sets (default $NMT_DATA_DIR)")
    p.add_argument("--output-dir", "-o", metavar="DIR", help="where hypotheses and scores go")
    p.add_argument("--beam-size", "-b", type=int, metavar="K", help="beam size (default: the checkpoint's)")
    p.add_argument("--lenpen", type=float, metavar="A", help="GNMT length penalty alpha (see nmt-translate --help)")
    p.add_argument("--max-len-a", type=float, metavar="A", help="output cap = a * source pieces + b")
    p.add_argument("--max-len-b", type=int, metavar="B", help="output cap = a * source pieces + b")
    p.add_argument("--min-len", type=int, metavar="N", help="no EOS before N output pieces (0 = off)")
    p.add_argument("--no-repeat-ngram", type=int, metavar="N", help="no N-gram of pieces twice in an output (0 = off)")
    p.add_argument(
        "--early-stop", choices=[e.value for e in EarlyStop], help="beam search stopping rule (nmt-translate --help)"
    )
    p.add_argument("--max-tokens", type=int, metavar="N", help="source tokens per batch")
    p.add_argument(
        "--max-source-len", type=int, metavar="N", help="truncate longer sources (default: the checkpoint's max_len)"
    )
    p.add_argument("--tokenize", metavar="TOK", help="sacrebleu BLEU tokenizer: 13a (default), none, intl, char, ...")
    p.add_argument("--lowercase", action="store_true", help="case-insensitive BLEU and chrF")
    p.add_argument("--dump-dir", metavar="DIR", help="write attention matrices, heatmaps and word alignments here")
    p.add_argument("--heatmaps", type=int, default=10, metavar="N", help="heatmaps for the first N sentences")
    p.add_argument("--gold-alignments", metavar="FILE", help="gold Pharaoh links for --src/--ref, for AER")
    p.add_argument("--gold-base", type=int, choices=[0, 1], default=1, help="index base of the gold file")
    p.add_argument("--align-layer", type=int, metavar="L", help="decoder layer whose attention is used (Transformer)")
    p.add_argument("--align-heads", type=int, nargs="+", metavar="H", help="attention heads averaged")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="bf16/fp16: autocast")
    p.add_argument("--threads", type=int, metavar="N", default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the scores")
    return p


def set_name(path: str) -> str:
    """``test_2016_flickr.de.gz`` -> ``test_2016_flickr``."""
    return re.sub(r"(\.[A-Za-z]{2,3})?(\.gz)?$", "", Path(path).name) or "test"


def load_sets(args: argparse.Namespace, cfg) -> list:
    from nmt.data.corpus import Parallel, data_root, load_parallel, read_lines

    if (args.src is None) != (args.ref is None):
        raise NMTError("give both --src and --ref, or neither (then the checkpoint's test sets are used)")
    if args.src is not None:
        src, ref = list(read_lines(args.src)), list(read_lines(args.ref))
        if len(src) != len(ref):
            raise DataError(f"{args.src} has {len(src)} lines but {args.ref} has {len(ref)}")
        return [Parallel(set_name(args.src), src, ref, (args.src, args.ref), "")]
    if cfg.data.hf is not None and cfg.data.hf.path:
        from nmt.data.corpus import load_hf, open_hf

        root = Path(args.data_dir) if args.data_dir else data_root()
        dd = open_hf(cfg.data.hf, root)
        return [
            load_hf(dd, s, cfg.data.src_lang, cfg.data.tgt_lang, description=cfg.data.hf.path) for s in cfg.data.test
        ]
    if not cfg.data.test:
        raise NMTError("no --src/--ref given, and the checkpoint's config names no test sets (data.test)")
    root = Path(args.data_dir) if args.data_dir else None
    return [load_parallel(prefix, cfg.data.src_lang, cfg.data.tgt_lang, root) for prefix in cfg.data.test]


def write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def dump(translator, translations, name: str, dump_dir: Path, heatmaps: int) -> None:
    """Attention .npz, Pharaoh alignments and the first heatmaps of one set."""
    from nmt.analysis.attention import EOS_PIECE, AttentionRecord, plot_heatmap, save_attention

    tok, records = translator.tokenizer, []
    for t in translations:
        h = t.hypotheses[0]
        src = [*tok.src_pieces(t.src_ids), EOS_PIECE]
        tgt = [*tok.tgt_pieces(h.tokens), EOS_PIECE]
        records.append(AttentionRecord(t.line - 1, h.attention.numpy(), src, tgt))
    save_attention(dump_dir / f"{name}.attention.npz", records)
    write_text(dump_dir / f"{name}.align", [translator.links(t) for t in translations])
    for r in records[:heatmaps]:
        plot_heatmap(r, dump_dir / f"{name}.heatmaps" / f"{r.id + 1:05d}.png", title=f"{name}, line {r.id + 1}")


def gold_aer(translator, translations, refs: list[str], path: str, base: int) -> dict:
    from nmt.analysis.alignment import aer, read_pharaoh

    gold = read_pharaoh(path, base=base)
    if len(gold) != len(translations):
        raise DataError(f"{path} has {len(gold)} lines but the test set has {len(translations)} sentences")
    same = [i for i, (t, r) in enumerate(zip(translations, refs)) if t.texts[0].split() == r.split() and r.strip()]
    hyps = [translator.word_alignment(translations[i]) for i in same]
    result = aer(hyps, [gold[i] for i in same]).as_dict() if same else {"aer": None, "sentences": 0}
    return {**result, "of": len(gold), "note": "sentences whose output equals the reference word for word"}


def evaluate(args: argparse.Namespace) -> int:
    import torch

    from nmt.config import to_dict
    from nmt.evaluate import bleu_by_length, format_buckets, plot_buckets, score
    from nmt.translate import Translator

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    want_attention = args.dump_dir is not None or args.gold_alignments is not None
    if args.gold_alignments and args.src is None:
        raise NMTError("--gold-alignments needs --src and --ref (the sentence pairs the gold links describe)")
    overrides = {
        k: v
        for k, v in {
            "beam_size": args.beam_size,
            "lenpen": args.lenpen,
            "max_len_a": args.max_len_a,
            "max_len_b": args.max_len_b,
            "min_len": args.min_len,
            "no_repeat_ngram": args.no_repeat_ngram,
            "early_stop": args.early_stop,
            "batch_tokens": args.max_tokens,
        }.items()
        if v is not None
    }
    translator = Translator.from_checkpoints(
        args.checkpoint,
        device=resolve_device(args.device),
        search={"nbest": 1, "sampling": False, **overrides},
        max_source_len=args.max_source_len,
        need_attention=want_attention,
        align_layer=args.align_layer,
        align_heads=args.align_heads,
        precision=args.precision,
    )
    cfg = translator.config
    ckpt = Path(args.checkpoint[0])
    out_dir = Path(args.output_dir) if args.output_dir else ckpt.with_name(ckpt.stem + ".eval")
    summary = {"checkpoints": args.checkpoint, "search": to_dict(translator.cfg), "sets": []}
    for data in load_sets(args, cfg):
        translations = translator.translate(data.src)
        hyps = [t.texts[0] for t in translations]
        write_text(out_dir / f"{data.name}.hyp", hyps)
        scores = score(hyps, data.tgt, tokenize=args.tokenize, lowercase=args.lowercase)
        buckets = bleu_by_length(data.src, hyps, data.tgt, tokenize=args.tokenize, lowercase=args.lowercase)
        (out_dir / f"{data.name}.buckets.txt").write_text(format_buckets(buckets) + "\n", encoding="utf-8")
        plot_buckets(buckets, out_dir / f"{data.name}.buckets.png", title=f"{data.name}: BLEU by source length")
        entry = {
            "name": data.name,
            "files": list(data.files),
            "sentences": len(hyps),
            **scores.as_dict(),
            "buckets": [{**asdict(b), "label": b.label} for b in buckets],
            "hypotheses": str(out_dir / f"{data.name}.hyp"),
        }
        if args.dump_dir:
            dump(translator, translations, data.name, Path(args.dump_dir), args.heatmaps)
        if args.gold_alignments:
            entry["alignment"] = gold_aer(translator, translations, data.tgt, args.gold_alignments, args.gold_base)
        summary["sets"].append(entry)
        print(f"{data.name}: BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}  ({len(hyps)} sentences)")
        print(f"  BLEU signature: {scores.bleu_signature}\n  chrF signature: {scores.chrf_signature}")
        if "alignment" in entry and entry["alignment"]["aer"] is not None:
            a = entry["alignment"]
            print(
                f"  AER {a['aer']:.4f} (precision {a['precision']:.4f}, recall {a['recall']:.4f}) over "
                f"{a['sentences']} of {a['of']} sentences (output = reference)"
            )
        elif "alignment" in entry:
            print(f"  AER: no sentence of {entry['alignment']['of']} was translated exactly as its reference")
        if not args.quiet:
            print("  " + format_buckets(buckets).replace("\n", "\n  "))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not args.quiet:
        print(f"results: {out_dir / 'results.json'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, quiet=args.quiet)
    return run_cli(PROG, lambda: evaluate(args))


if __name__ == "__main__":
    sys.exit(main())

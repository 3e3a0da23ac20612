"""``nmt-align``: word-align given sentence pairs with a trained model (forced alignment), score against gold links.

Examples::

    nmt-align -c best.pt --src deen.de --tgt deen.en > deen.align
    nmt-align -c best.pt --src deen.de.gz --tgt deen.en.gz --gold deen.talp.gz --gold-base 1 --report aer.json
    nmt-align -c deen.pt --reverse-checkpoint ende.pt --method bidir --src deen.de --tgt deen.en -o deen.align
    nmt-align -c best.pt --src deen.de --tgt deen.en --gold deen.talp --pick-layer --per-head
    nmt-align --score deen.align --gold deen.talp.gz --gold-base 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from nmt.cli.common import (
    add_alignment_flags,
    add_deprecated,
    add_running_flags,
    alignment_heads,
    new_parser,
    open_output,
    resolve_device,
    run_cli,
    setup_logging,
)
from nmt.config import TransformerConfig
from nmt.errors import DataError, NMTError

PROG = "nmt-align"
SYMMETRIZATIONS = ("intersection", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and")

EPILOG = """\
output:
  One Pharaoh line per sentence pair, in input order: "i-j" links, 0-based, source word i, target word j, sorted
  by target word. Words are the whitespace tokens of the lines as given, so pre-tokenized gold sets keep their
  indices. A pair with an empty side gives an empty line. --soft FILE.npz also writes each pair's word weights,
  (target words x source words), under the key of its 0-based pair index (np.load(FILE)["0"]).

methods (--method; default: shift, or for checkpoints trained with guided alignment the rows they were trained on:
attention, or shift with train.alignment.shift=true):
  attention  target piece t reads the decoder step that predicts it (the default convention of guided training)
  shift      target piece t reads the step that receives it as input (Shift-Att, Chen et al. 2020)
  bidir      both directions (--reverse-checkpoint: a target->source model) with --bidir-base, symmetrised by
             --symmetrize (default grow-diag-final-and, Koehn et al. 2003)
  The source EOS column is dropped and rows renormalised; source pieces of a word are summed, target pieces
  averaged; each target word links to its argmax source word (or every word >= --alignment-threshold).
  --alignment-layer / --alignment-heads default to the checkpoint's model.alignment_layer / alignment_heads.

scoring (--gold FILE: "i-j" sure and "ipj" possible links, --gold-base 0|1):
  AER = 1 - (|A&S| + |A&P|) / (|A| + |S|), precision = |A&P| / |A|, recall = |A&S| / |S| (Och & Ney 2003),
  summed over the corpus. --report FILE.json writes them with the method, layer, heads and link counts.
  --pick-layer scores every decoder layer with attention and shift (and every head with --per-head) and names
  the best. --score HYP --gold GOLD scores an existing Pharaoh file (0-based), no checkpoint needed.
  Before anything is aligned, every gold link is checked against its pair's words: a link beyond them stops with
  the line and the link (and names the other --gold-base when every link would fit with it); with --score, give
  --src and --tgt for that check. No pairs, or not a single link on either side, is an error: nothing to score.
"""


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(
        PROG, "Word-align given sentence pairs with nmt checkpoints (forced alignment) and score them (AER).", EPILOG
    )
    p.add_argument("--checkpoint", "-c", metavar="CKPT", help="the source->target model")
    p.add_argument("--src", metavar="FILE", help="source sentences, plain or .gz (- = stdin)")
    p.add_argument("--tgt", metavar="FILE", help="target sentences, line-aligned with --src")
    p.add_argument("--output", "-o", default="-", metavar="FILE", help="Pharaoh alignments (- = stdout)")
    m = p.add_argument_group("method")
    m.add_argument("--method", choices=["attention", "shift", "bidir"], help="see below")
    add_alignment_flags(m)
    add_deprecated(m, "--layer", "--alignment-layer", dest="alignment_layer", type=int)
    add_deprecated(m, "--heads", "--alignment-heads", dest="alignment_heads", type=alignment_heads)
    add_deprecated(m, "--threshold", "--alignment-threshold", dest="alignment_threshold", type=float)
    m.add_argument("--reverse-checkpoint", metavar="CKPT", help="a target->source model for --method bidir")
    m.add_argument("--bidir-base", choices=["attention", "shift"], default="shift", help="each direction's method")
    m.add_argument("--symmetrize", choices=SYMMETRIZATIONS, default="grow-diag-final-and", help="for bidir")
    m.add_argument("--lowercase", action="store_true", help="lowercase both sides (models trained lowercased)")
    m.add_argument("--soft", metavar="FILE.npz", help="also write the word weight matrices")
    s = p.add_argument_group("scoring")
    s.add_argument("--gold", metavar="FILE", help="gold links for the pairs: print AER, precision, recall")
    s.add_argument("--gold-base", type=int, choices=[0, 1], default=1, help="index base of --gold (default 1)")
    s.add_argument("--report", metavar="FILE.json", help="write the scores (and settings) as JSON")
    s.add_argument("--score", metavar="HYP", help="score this Pharaoh file against --gold (no checkpoint)")
    s.add_argument("--pick-layer", action="store_true", help="score every layer x {attention, shift} on --gold")
    s.add_argument("--per-head", action="store_true", help="with --pick-layer: every head on its own too")
    r = p.add_argument_group("running")
    r.add_argument("--batch-tokens", type=int, default=4096, metavar="N", help="padded tokens per batch")
    r.add_argument("--chunk-lines", type=int, default=10_000, metavar="N", help="pairs read and aligned at a time")
    add_running_flags(r, precision=False)
    r.add_argument("--quiet", "-q", action="store_true", help="no summary or warnings")
    return p


# --------------------------------------------------------------------------------------------- input
def _lines(path: str) -> Iterator[str]:
    from nmt.data.corpus import read_lines
    from nmt.translate import decode_lines

    return decode_lines(sys.stdin.buffer, name="<stdin>") if path == "-" else read_lines(path)


def read_pairs(src: str, tgt: str) -> Iterator[tuple[str, str]]:
    """Yield (source, target) lines; different line counts stop with an error naming both files."""
    src_it, tgt_it = _lines(src), _lines(tgt)
    n = 0
    for s in src_it:
        t = next(tgt_it, None)
        if t is None:
            raise DataError(f"{tgt} has fewer lines than {src}: it ends after line {n}, {src} goes on")
        n += 1
        yield s, t
    if next(tgt_it, None) is not None:
        raise DataError(f"{tgt} has more lines than {src}: {src} ends after line {n}, {tgt} goes on")


def chunks(pairs: Iterator[tuple[str, str]], size: int) -> Iterator[tuple[list[str], list[str]]]:
    src: list[str] = []
    tgt: list[str] = []
    for s, t in pairs:
        src.append(s)
        tgt.append(t)
        if len(src) >= size:
            yield src, tgt
            src, tgt = [], []
    if src:
        yield src, tgt


# --------------------------------------------------------------------------------------------- scoring
def read_gold(path: str, base: int) -> list:
    """The gold file, read before any aligning so that a broken one fails at once."""
    from nmt.analysis.alignment import read_pharaoh

    return read_pharaoh(path, base=base)


def check_gold(gold: list, pairs: list[tuple[str, str]], args: argparse.Namespace) -> None:
    """The gold file against the pairs: the same line count, every link within its pair's words."""
    from nmt.analysis.alignment import check_gold_ranges

    if not pairs:
        raise DataError(f"no sentence pairs in {args.src} and {args.tgt}: there is nothing to align or score")
    words = [(len(src.split()), len(tgt.split())) for src, tgt in pairs]
    check_gold_ranges(gold, words, path=args.gold, base=args.gold_base)


def score(hyps: list[set], gold: list, gold_path: str) -> dict:
    """AER, precision, recall and the link counts of ``hyps`` against the gold links (line counts must agree).

    Raises:
        DataError: no pair, or not a single link in either ``hyps`` or the gold's sure links: nothing to score.
    """
    from nmt.analysis.alignment import aer

    if len(gold) != len(hyps):
        raise DataError(f"{gold_path} has {len(gold)} lines but there are {len(hyps)} sentence pairs")
    if not hyps:
        raise DataError(f"{gold_path} and the alignments are empty: there is nothing to score")
    result = aer(hyps, gold).as_dict()
    if result["aer"] is None:
        raise DataError(
            f"neither the alignments nor {gold_path} hold a sure link on any of the {len(hyps)} pairs: there is "
            "nothing to score"
        )
    result["counts"] = {
        "links": sum(len(h) for h in hyps),
        "sure": sum(len(g.sure) for g in gold),
        "possible": sum(len(g.possible | g.sure) for g in gold),
        "links_in_sure": sum(len(h & g.sure) for h, g in zip(hyps, gold)),
        "links_in_possible": sum(len(h & (g.possible | g.sure)) for h, g in zip(hyps, gold)),
    }
    return result


def _figure(x: float | None) -> str:
    """A score to 4 places, or n/a when it has nothing to count (a precision without links)."""
    return "n/a" if x is None else f"{x:.4f}"


def _summary(r: dict) -> str:
    return (
        f"AER {_figure(r['aer'])}  precision {_figure(r['precision'])}  recall {_figure(r['recall'])}  "
        f"({r['sentences']} pairs)"
    )


def write_report(path: str, report: dict) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None


def _score_file(args: argparse.Namespace) -> int:
    from nmt.analysis.alignment import parse_pharaoh

    hyps = [
        parse_pharaoh(line, where=f"{args.score}, line {n}: ").possible for n, line in enumerate(_lines(args.score), 1)
    ]
    gold = read_gold(args.gold, args.gold_base)
    if args.src and args.tgt:  # the sentences, to check every gold link against its pair's words
        check_gold(gold, list(read_pairs(args.src, args.tgt)), args)
    result = {
        "hypothesis": args.score,
        "gold": args.gold,
        "gold_base": args.gold_base,
        **score(hyps, gold, args.gold),
    }
    print(_summary(result))
    if args.report:
        write_report(args.report, result)
    return 0


# --------------------------------------------------------------------------------------------- aligning
def _load(args: argparse.Namespace):
    import torch

    from nmt.analysis.forced import ForcedAligner, check_reverse_pair

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    opts = {"device": device, "batch_tokens": args.batch_tokens, "lowercase": args.lowercase}
    forward = ForcedAligner.from_checkpoint(args.checkpoint, **opts)
    reverse = ForcedAligner.from_checkpoint(args.reverse_checkpoint, **opts) if args.reverse_checkpoint else None
    if reverse is not None:
        check_reverse_pair(forward, reverse)  # before any output is written
    for aligner in (forward, reverse):
        if aligner is not None and (args.alignment_layer is not None or args.alignment_heads is not None):
            heads = _default_heads(aligner, args.alignment_layer, args.alignment_heads)
            aligner.set_alignment(args.alignment_layer, heads)
    return forward, reverse


def _default_heads(aligner, layer: int | None, heads: list[int] | None) -> list[int] | None:
    """--alignment-heads, else the checkpoint's heads when --alignment-layer is its layer (a guided head), else all."""
    if heads is not None or layer is None:
        return heads if heads is not None else aligner.heads
    cfg = aligner.config.model
    if not isinstance(cfg, TransformerConfig):
        return None
    same = layer % aligner.num_layers == cfg.alignment_layer % aligner.num_layers
    return cfg.alignment_heads if same else None


def _align(args: argparse.Namespace) -> int:
    from nmt.analysis.alignment import format_pharaoh
    from nmt.analysis.forced import align_bidirectional, default_method

    gold = read_gold(args.gold, args.gold_base) if args.gold else None
    forward, reverse = _load(args)
    method = args.method or default_method(forward.config).value
    if method == "bidir" and reverse is None:
        raise NMTError("--method bidir needs --reverse-checkpoint (a model trained target -> source)")
    source: Iterator[tuple[str, str]] = read_pairs(args.src, args.tgt)
    if gold is not None:  # a gold set is small: hold its pairs and check every link before aligning any
        held = list(source)
        check_gold(gold, held, args)
        source = iter(held)
    start = time.perf_counter()
    hyps: list[set] = []
    pairs = 0
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open_output(args.output))
        soft = stack.enter_context(NpzWriter(args.soft)) if args.soft else None
        for src, tgt in chunks(source, args.chunk_lines):
            if method == "bidir":
                done = align_bidirectional(
                    forward,
                    reverse,
                    src,
                    tgt,
                    base=args.bidir_base,
                    symmetrization=args.symmetrize,
                    threshold=args.alignment_threshold,
                    first_line=pairs + 1,
                )
            else:
                done = forward.align(src, tgt, method, threshold=args.alignment_threshold, first_line=pairs + 1)
            out.write("".join(format_pharaoh(a.links) + "\n" for a in done).encode("utf-8"))
            out.flush()
            for k, a in enumerate(done):
                if soft is not None:
                    soft.add(str(pairs + k), a.matrix)
                if args.gold:
                    hyps.append(a.links)
            pairs += len(done)
    if not pairs:
        raise DataError(f"no sentence pairs in {args.src} and {args.tgt}: there is nothing to align")
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(f"{PROG}: {pairs} pairs in {seconds:.2f} s ({pairs / max(seconds, 1e-9):.1f} pairs/s)", file=sys.stderr)
    if gold is not None:
        report = {
            "checkpoint": args.checkpoint,
            "method": method,
            "layer": forward.layer,
            "heads": forward.heads,
            "threshold": args.alignment_threshold,
            "lowercase": args.lowercase,
            "seconds": round(seconds, 3),
            "gold": args.gold,
            "gold_base": args.gold_base,
            **score(hyps, gold, args.gold),
        }
        if method == "bidir":
            report.update(
                bidir_base=args.bidir_base,
                symmetrize=args.symmetrize,
                reverse_checkpoint=args.reverse_checkpoint,
                reverse_layer=reverse.layer,
                reverse_heads=reverse.heads,
            )
        print(f"{method}: {_summary(report)}", file=sys.stderr if args.output == "-" else sys.stdout)
        if args.report:
            write_report(args.report, report)
    return 0


def _pick_layer(args: argparse.Namespace) -> int:
    from nmt.analysis.alignment import matrix_to_links
    from nmt.analysis.forced import Method

    gold = read_gold(args.gold, args.gold_base)
    forward, _ = _load(args)
    pairs = list(read_pairs(args.src, args.tgt))
    check_gold(gold, pairs, args)
    src, tgt = [s for s, _ in pairs], [t for _, t in pairs]
    settings: list[tuple[int | None, list[int] | None]] = []
    for layer in range(forward.num_layers) if forward.layer is not None else [None]:
        settings.append((layer, None))
        if args.per_head and layer is not None:
            settings += [(layer, [h]) for h in range(forward.num_heads)]
    rows = []
    for layer, heads in settings:
        if layer is not None:
            forward.set_alignment(layer, heads)
        start = time.perf_counter()
        mats = forward.word_matrices(src, tgt, [Method.attention, Method.shift])
        seconds = time.perf_counter() - start
        for method in (Method.attention, Method.shift):
            hyps = [matrix_to_links(m[method], threshold=args.alignment_threshold) for m in mats]
            result = score(hyps, gold, args.gold)
            rows.append(
                {"layer": layer, "heads": heads, "method": method.value, "seconds": round(seconds, 3), **result}
            )
    best = min(rows, key=lambda r: r["aer"])
    print(format_table(rows))
    flags = f"--method {best['method']}"
    flags += f" --alignment-layer {best['layer']}" if best["layer"] is not None else ""
    flags += f" --alignment-heads {' '.join(map(str, best['heads']))}" if best["heads"] else ""
    print(f"best: {flags}  ({_summary(best)})")
    if args.report:
        report = {"checkpoint": args.checkpoint, "gold": args.gold, "gold_base": args.gold_base}
        write_report(args.report, {**report, "threshold": args.alignment_threshold, "results": rows, "best": best})
    return 0


def format_table(rows: list[dict]) -> str:
    """A Markdown table of --pick-layer results: layer, heads, method, AER, precision, recall."""
    lines = ["| layer | heads | method | AER | precision | recall |", "|---:|---|---|---:|---:|---:|"]
    for r in rows:
        heads = ",".join(map(str, r["heads"])) if r["heads"] else "all"
        layer = "-" if r["layer"] is None else str(r["layer"])
        figures = " | ".join(_figure(r[k]) for k in ("aer", "precision", "recall"))
        lines.append(f"| {layer} | {heads} | {r['method']} | {figures} |")
    return "\n".join(lines)


class NpzWriter:
    """Writes arrays one at a time into an ``.npz`` (a zip of ``.npy`` files), so memory stays flat."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> NpzWriter:
        import zipfile

        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED)
        except OSError as e:
            raise DataError(f"cannot write {self.path}: {e.strerror or e}") from None
        return self

    def add(self, key: str, array) -> None:
        import numpy as np

        with self.zip.open(f"{key}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asarray(array, dtype=np.float32), allow_pickle=False)

    def __exit__(self, *exc: object) -> None:
        self.zip.close()


def _run(args: argparse.Namespace) -> int:
    if args.score:
        if not args.gold:
            raise NMTError("--score needs --gold (the gold links to score against)")
        if bool(args.src) != bool(args.tgt):
            raise NMTError("--score takes --src and --tgt together (to check the gold links), or neither")
        return _score_file(args)
    missing = [
        flag
        for flag, value in (("--checkpoint", args.checkpoint), ("--src", args.src), ("--tgt", args.tgt))
        if not value
    ]
    if missing:
        raise NMTError(f"{', '.join(missing)} required (or --score HYP --gold GOLD to score a file)")
    if args.src == "-" and args.tgt == "-":
        raise NMTError("--src and --tgt cannot both be stdin")
    for flag, value in (("--batch-tokens", args.batch_tokens), ("--chunk-lines", args.chunk_lines)):
        if value < 1:
            raise NMTError(f"{flag} must be positive, got {value}")
    if args.alignment_threshold is not None and not 0 < args.alignment_threshold <= 1:
        raise NMTError(f"--alignment-threshold must be in (0, 1], got {args.alignment_threshold}")
    if args.pick_layer:
        if not args.gold:
            raise NMTError("--pick-layer needs --gold (the gold links to score every layer against)")
        return _pick_layer(args)
    if args.per_head:
        raise NMTError("--per-head only goes with --pick-layer")
    return _align(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, quiet=args.quiet)
    return run_cli(PROG, lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())

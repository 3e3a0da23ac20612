"""Word-align a parallel corpus with eflomal (Östling & Tiedemann 2016) and write the Pharaoh files that guided
alignment training (``nmt-train train.alignment.file=...``) and AER comparisons read.

    .venv/bin/python scripts/eflomal_align.py --src train.de.gz --tgt train.en.gz --output-prefix align/train \\
        [--lowercase] [--split-punct] [--symmetrize grow-diag-final-and] [--priors FILE] \\
        [--gold deen.talp.gz --gold-base 1 [--gold-start LINE]]

Several files per side (``--src a.de b.de --tgt a.en b.en``) are aligned as one corpus, in the order given (more
text helps a statistical aligner; the outputs cover all of it, line by line).

Outputs, one line per input pair (empty lines for pairs with an empty side, which are not given to eflomal),
0-based ``i-j`` links with the source word first, words = the whitespace tokens of the input lines:

    P.fwd   forward direction (each target word linked to at most one source word)
    P.rev   reverse direction (each source word linked to at most one target word), also source first
    P.gdfa  the two symmetrised (``--symmetrize``; the file is named after it: gdfa, gdf, gd, intersection, union)

``--split-punct`` aligns punctuation-split tokens (``word,`` -> ``word`` ``,``), which helps on raw text such as
Multi30k, and maps the links back to the input's whitespace tokens, so the files index the training corpus as it
is. eflomal lowercases its vocabulary itself; ``--lowercase`` also lowercases the text given to it.
eflomal samples with an unseeded generator: two runs differ slightly.

``--gold FILE`` (Pharaoh, ``i-j`` sure / ``ipj`` possible, ``--gold-base 1`` for 1-based files) prints AER,
precision and recall of the three alignments on the gold pairs, which are input lines ``--gold-start`` (1-based)
onwards; by default the corpus ends with them (aligners are evaluated on gold pairs added to their training text).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from nmt.analysis.alignment import Link, aer, format_pharaoh, read_pharaoh
from nmt.analysis.symmetrize import METHODS, symmetrize
from nmt.cli.common import run_cli
from nmt.data.corpus import read_lines
from nmt.errors import DataError, NMTError

SUFFIX = {"grow-diag-final-and": "gdfa", "grow-diag-final": "gdf", "grow-diag": "gd"}
PUNCT = re.compile(r"\w+|[^\w\s]")  # runs of word characters, and every other character alone


def read_side(paths: list[str]) -> list[str]:
    lines: list[str] = []
    for path in paths:
        lines.extend(read_lines(path))
    return lines


def tokenize(line: str, *, lowercase: bool, split_punct: bool) -> tuple[list[str], list[int]]:
    """The tokens given to eflomal and, for each, the index of the whitespace token it comes from."""
    tokens, origin = [], []
    for k, word in enumerate(line.split()):
        parts = PUNCT.findall(word) if split_punct else [word]  # never empty: every character matches
        tokens.extend(p.lower() if lowercase else p for p in parts)
        origin.extend([k] * len(parts))
    return tokens, origin


def run_eflomal(src: list[list[str]], tgt: list[list[str]], args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Align token lists with eflomal's Python API; return the raw forward and reverse Pharaoh lines."""
    try:
        from eflomal import Aligner
    except ImportError:
        raise NMTError("eflomal is not installed: pip install -e '.[align]' (or pip install eflomal)") from None

    aligner = Aligner(model=args.model, n_samplers=args.n_samplers, rel_iterations=args.length)
    with tempfile.TemporaryDirectory(prefix="eflomal-") as tmp:
        fwd, rev = Path(tmp) / "fwd", Path(tmp) / "rev"
        priors = open(args.priors, encoding="utf-8") if args.priors else None  # noqa: SIM115 (closed below)
        try:
            aligner.align(
                [" ".join(s) + "\n" for s in src],
                [" ".join(t) + "\n" for t in tgt],
                links_filename_fwd=str(fwd),
                links_filename_rev=str(rev),
                priors_input=priors,
                quiet=not args.verbose,
            )
        except (ValueError, OSError, RuntimeError) as e:
            raise NMTError(f"eflomal failed: {e}") from None
        finally:
            if priors is not None:
                priors.close()
        return fwd.read_text(encoding="utf-8").splitlines(), rev.read_text(encoding="utf-8").splitlines()


def parse_links(line: str, n_src: int, n_tgt: int, where: str) -> set[Link]:
    links = set()
    for item in line.split():
        i, _, j = item.partition("-")
        if not (i.isdigit() and j.isdigit()) or int(i) >= n_src or int(j) >= n_tgt:
            raise NMTError(f"{where}: unexpected eflomal link {item!r} for {n_src} x {n_tgt} tokens")
        links.add((int(i), int(j)))
    return links


def align(args: argparse.Namespace) -> int:
    if len(args.src) != len(args.tgt):
        raise NMTError(f"--src has {len(args.src)} files but --tgt has {len(args.tgt)}: give them in pairs")
    started = time.perf_counter()
    src_lines, tgt_lines = [], []
    for s, t in zip(args.src, args.tgt):
        a, b = list(read_lines(s)), list(read_lines(t))
        if len(a) != len(b):
            raise DataError(f"{s} has {len(a)} lines but {t} has {len(b)}: the corpus is not line-aligned")
        src_lines += a
        tgt_lines += b
    src_tok = [tokenize(line, lowercase=args.lowercase, split_punct=args.split_punct) for line in src_lines]
    tgt_tok = [tokenize(line, lowercase=args.lowercase, split_punct=args.split_punct) for line in tgt_lines]
    used = [n for n in range(len(src_lines)) if src_tok[n][0] and tgt_tok[n][0]]  # empty sides stay out
    if not used:
        raise DataError("no sentence pair has words on both sides: nothing to align")
    t0 = time.perf_counter()
    fwd_raw, rev_raw = run_eflomal([src_tok[n][0] for n in used], [tgt_tok[n][0] for n in used], args)
    eflomal_seconds = time.perf_counter() - t0
    if len(fwd_raw) != len(used) or len(rev_raw) != len(used):
        raise NMTError(f"eflomal wrote {len(fwd_raw)}/{len(rev_raw)} lines for {len(used)} sentence pairs")

    empty: set[Link] = set()
    out = {name: [empty] * len(src_lines) for name in ("fwd", "rev", "sym")}
    for k, n in enumerate(used):
        (s_tokens, s_origin), (t_tokens, t_origin) = src_tok[n], tgt_tok[n]
        where = f"input line {n + 1}"
        fwd = parse_links(fwd_raw[k], len(s_tokens), len(t_tokens), where)
        rev = parse_links(rev_raw[k], len(s_tokens), len(t_tokens), where)
        sym = symmetrize(fwd, rev, args.symmetrize)
        for name, links in (("fwd", fwd), ("rev", rev), ("sym", sym)):  # back to the input's whitespace tokens
            out[name][n] = {(s_origin[i], t_origin[j]) for i, j in links}

    prefix = Path(args.output_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = {"fwd": "fwd", "rev": "rev", "sym": SUFFIX.get(args.symmetrize, args.symmetrize)}
    for key, suffix in names.items():
        path = prefix.with_name(f"{prefix.name}.{suffix}")
        path.write_text("".join(format_pharaoh(links) + "\n" for links in out[key]), encoding="utf-8")
    print(
        f"aligned {len(used):,} of {len(src_lines):,} sentence pairs ({len(src_lines) - len(used):,} with an empty "
        f"side left unaligned) in {time.perf_counter() - started:.1f} s (eflomal {eflomal_seconds:.1f} s); wrote "
        + ", ".join(f"{prefix}.{s}" for s in names.values())
        + f" ({len(src_lines):,} lines each)"
    )
    if args.gold:
        report_aer(args, out, names, len(src_lines))
    return 0


def report_aer(args: argparse.Namespace, out: dict[str, list[set[Link]]], names: dict[str, str], n: int) -> None:
    gold = read_pharaoh(args.gold, base=args.gold_base)
    start = args.gold_start - 1 if args.gold_start else n - len(gold)
    if not 0 <= start <= n - len(gold):
        raise NMTError(
            f"{args.gold} has {len(gold)} lines: they do not fit the corpus of {n} lines from line {start + 1}"
        )
    print(f"AER on {len(gold)} gold pairs (input lines {start + 1}-{start + len(gold)}), in %:")
    for key, suffix in names.items():
        score = aer(out[key][start : start + len(gold)], gold)
        print(f"  {suffix:<6} AER {100 * score.aer:5.1f}  precision {100 * score.precision:5.1f}  "
              f"recall {100 * score.recall:5.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", nargs="+", required=True, metavar="FILE", help="source side (plain or .gz)")
    p.add_argument("--tgt", nargs="+", required=True, metavar="FILE", help="target side, line-aligned with --src")
    p.add_argument("--output-prefix", required=True, metavar="P", help="writes P.fwd, P.rev and P.gdfa")
    p.add_argument("--lowercase", action="store_true", help="lowercase the text given to eflomal")
    p.add_argument("--split-punct", action="store_true", help="align punctuation-split tokens (links map back)")
    p.add_argument("--symmetrize", choices=METHODS, default="grow-diag-final-and", help="default: %(default)s")
    p.add_argument("--priors", metavar="FILE", help="eflomal priors (eflomal-makepriors) to start from")
    p.add_argument("--model", type=int, choices=(1, 2, 3), default=3, help="1 IBM1, 2 +HMM, 3 +fertility (default)")
    p.add_argument("--length", type=float, default=1.0, help="relative number of sampling iterations")
    p.add_argument("--n-samplers", type=int, default=3, help="independent samplers (default 3)")
    p.add_argument("--gold", metavar="FILE", help="gold Pharaoh links of the last lines (or --gold-start) for AER")
    p.add_argument("--gold-base", type=int, choices=(0, 1), default=0, help="index base of --gold (RWTH de-en: 1)")
    p.add_argument("--gold-start", type=int, metavar="LINE", help="1-based input line of the first gold pair")
    p.add_argument("-v", "--verbose", action="store_true", help="show eflomal's progress")
    args = p.parse_args(argv)
    return run_cli("eflomal_align", lambda: align(args))


if __name__ == "__main__":
    sys.exit(main())

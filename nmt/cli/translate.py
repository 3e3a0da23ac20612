"""``nmt-translate``: translate text line by line with one checkpoint or an ensemble (a Unix filter).

Examples::

    nmt-translate --checkpoint runs/x/checkpoints/best.pt < test.de > test.en
    nmt-translate --checkpoint a.pt b.pt --input test.de --output test.en --alignments test.align
    nmt-translate --engine ctranslate2 --checkpoint deploy/de-en < test.de > test.en   # an nmt-export directory
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from nmt.cli.common import (
    add_alignment_flags,
    add_deprecated,
    add_running_flags,
    add_search_flags,
    new_parser,
    open_input,
    open_output,
    resolve_device,
    run_cli,
    search_overrides,
    setup_logging,
)
from nmt.cli.reading import CountingLines, arrivals, is_terminal, regular_file_size
from nmt.cli.shards import (
    add_shard_flags,
    check_files,
    merge,
    merge_when_complete,
    shard_device,
    torchrun_shard,
    translate_shard,
)
from nmt.config import InferencePrecision
from nmt.errors import NMTError

PROG = "nmt-translate"

EPILOG = """\
output:
  One output line per input line, in input order. An empty input line gives an empty output line; a line with
  more source pieces than the model's maximum (the checkpoint's data.max_len, or --max-source-len) is truncated
  with a warning naming the line. Invalid UTF-8 stops with an error naming the line (exit status 2), unless
  --errors replace.

  With --nbest N > 1, every input line gives exactly N lines, tab-separated:
      line_no<TAB>rank<TAB>score<TAB>hypothesis
  line_no and rank are 1-based, score is the length-penalised log-probability (see --lenpen); an empty input line
  gives N lines with an empty hypothesis and score 0.

search:
  Beam search over whole batches (--beam-size 1: greedy), or sampling (--sampling). Defaults come from the
  checkpoint's search config.
  score = log p(y|x) / ((5 + |y|) / 6) ** lenpen, with |y| counting the final EOS: --lenpen is GNMT's alpha
  (Wu et al. 2016); 0 ranks by log-probability, > 0 favours longer outputs. fairseq's --lenpen is another
  formula (log p / |y| ** lenpen): the same number does not mean the same thing.
  Output length is capped per sentence at floor(a * source pieces) + b pieces (--max-len-a, --max-len-b);
  --min-len N forbids EOS before N pieces (at most the cap); --no-repeat-ngram N forbids any N-gram of pieces
  twice in one output.
  --early-stop: a sentence's beam search ends once beam-size hypotheses have finished, or earlier:
      bound      (default) once no live beam can beat the n-best finished ones: the live log-probability
                 divided by the largest length penalty the cap allows is an upper bound. Exact: the output
                 is the same as with none, and the top line never depends on --nbest.
      heuristic  once the best finished score beats every live beam's score as if it ended at the next step
                 (Hugging Face's early_stopping=False). Faster; with lenpen > 0 it can miss a better, longer
                 output, and the top line can change with --nbest.
      none       no early stop.
  Sampling: temperature first, then --sampling-topk, then --sampling-topp (the smallest set of most probable
  pieces holding at least p of the remaining probability), then a draw (seeded by --seed).

alignments (--alignments FILE):
  One Pharaoh line per input line: "i-j" pairs, 0-based, source word first. Words are the whitespace-separated
  tokens of the source line and of the output. They come from the cross-attention of the best hypothesis
  (--alignment-layer / --alignment-heads): the EOS row and the source EOS column are dropped and rows renormalised;
  the pieces of a source word are summed and the pieces of a target word averaged; each target word links to
  the source word with the largest weight (or to all with at least --alignment-threshold).

interactive use and progress:
  A file (--input, or a file redirected into stdin) is read --chunk-lines lines at a time. Standard input from a
  pipe or a terminal is read as it arrives: the lines that have arrived are translated at most --wait-ms after the
  first of them (a full chunk does not wait), and the output is flushed after each group, so a person typing
  sentences, or a program writing a line and reading its translation back, gets each translation at once. Order and
  one output line per input line hold as always. On a terminal, stderr shows a progress bar advanced after each
  batch, with a total and an ETA when the input is a file (estimated from the bytes read until all is read), and
  a closing line with the speed (--quiet: neither).

engines (--engine):
  nmt (default) runs the checkpoint(s) with PyTorch. ctranslate2 runs a directory written by nmt-export --format
  ctranslate2 (the ctranslate2 extra: pip install -e '.[ctranslate2]'), with the same output contract; search
  defaults and the maximum source length come from the export. Greedy outputs equal nmt's; in beam search
  CTranslate2 ranks by log p / |y|^lenpen (|y| without EOS) and caps lengths per batch (each output is then cut to
  its own cap), and --nbest scores are CTranslate2's. --precision picks a CTranslate2 compute type (default: the
  export's weight type); --threads sets its intra_threads. No alignments, no ensembles.

sharding (one input over several processes or machines):
  torchrun --nproc_per_node=N -m nmt.cli.translate -c CKPT -i FILE -o OUT   (also over several nodes)
  Every rank translates a contiguous range of the input's lines on its own device (cuda:LOCAL_RANK, or the CPU
  with --threads each) into OUT.shard-RANK-of-N; rank 0 then joins the shards in input order into OUT. The output
  is the same as one process's. A rank started again (the same command) resumes its shard from its last chunk
  (--chunk-lines) instead of starting over: progress is recorded in OUT.shard-K-of-N.json after every chunk.
  Without torchrun, e.g. as a SLURM job array, each job runs --shard K/N (K = 0..N-1) and, once all are done,
  nmt-translate --merge -o OUT [--alignments A] joins them. Input and outputs must be files on a file system
  every process sees.
"""


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, "Translate text with nmt checkpoints (stdin to stdout by default).", EPILOG)
    p.add_argument(
        "--checkpoint", "-c", nargs="+", metavar="CKPT", help="one or more (ensemble); an export DIR (required)"
    )
    p.add_argument("--input", "-i", default="-", metavar="FILE", help="source text, one sentence a line (- = stdin)")
    p.add_argument("--output", "-o", default="-", metavar="FILE", help="translations (- = stdout)")
    s = p.add_argument_group("search (defaults: the checkpoint's search config)")
    p.set_defaults(search_fields=add_search_flags(s))
    s.add_argument("--seed", type=int, metavar="N", default=1, help="random seed for --sampling (default: 1)")
    add_deprecated(s, "--max-tokens", "--batch-tokens", dest="batch_tokens", type=int, metavar="N")
    a = p.add_argument_group("alignments")
    a.add_argument("--alignments", metavar="FILE", help="write Pharaoh word alignments here")
    add_alignment_flags(a)
    add_deprecated(a, "--align-layer", "--alignment-layer", dest="alignment_layer", type=int)
    add_deprecated(a, "--align-heads", "--alignment-heads", dest="alignment_heads", type=int, nargs="+")
    add_deprecated(a, "--align-threshold", "--alignment-threshold", dest="alignment_threshold", type=float)
    r = p.add_argument_group("input and running")
    r.add_argument(
        "--max-source-len", type=int, metavar="N", help="truncate longer sources (default: the checkpoint's max_len)"
    )
    r.add_argument("--errors", choices=["strict", "replace"], default="strict", help="invalid UTF-8 handling")
    r.add_argument(
        "--chunk-lines", type=int, metavar="N", default=10_000, help="lines read, sorted and translated at a time"
    )
    r.add_argument(
        "--wait-ms",
        type=float,
        metavar="MS",
        default=100.0,
        help="stdin from a pipe or terminal: translate what has arrived at most MS ms after the first line of a "
        "chunk, without waiting for a full chunk (default: 100; see 'interactive use')",
    )
    r.add_argument(
        "--engine", choices=["nmt", "ctranslate2"], default="nmt", help="ctranslate2: run an nmt-export directory"
    )
    add_running_flags(r, precision_default=None)
    r.add_argument(
        "--workers",
        type=_workers_arg,
        metavar="N|auto",
        default="auto",
        help="decoding workers, each searching its own batches with --threads/N threads: the CPU's cores kept busy "
        "by separate batches rather than one batch's small operations (with --engine ctranslate2, its "
        "inter_threads). auto (default): one single-threaded worker per thread on a CPU, 1 on a GPU. Outputs do "
        "not change",
    )
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar, summary or warnings")
    add_shard_flags(p.add_argument_group("sharding (see below; under torchrun, by rank)"))
    return p


def _workers_arg(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {value!r}") from None


def resolve_workers(workers: int | str, threads: int, device_type: str) -> int:
    """``--workers auto``: as many single-threaded workers as threads on a CPU, one on a GPU. On 2 cores this layout
    decoded bf16 beam 5 a quarter faster than one 2-threaded worker (fp32 7 % faster), and CTranslate2 1.7x (beam 5)
    to 4.4x (greedy) faster: see the README's engine comparison."""
    if workers != "auto":
        return int(workers)
    return max(1, threads) if device_type == "cpu" else 1


def overrides(args: argparse.Namespace) -> dict:
    """The search fields given on the command line (the rest come from the checkpoint); ``--sampling`` implies
    beam size 1 unless one is given."""
    out = search_overrides(args, args.search_fields)
    if out.get("sampling"):
        out.setdefault("beam_size", 1)
    return out


def _translate(args: argparse.Namespace) -> int:
    import torch

    from nmt.translate import Translator, chunks, decode_lines

    if args.merge:
        if args.shard is not None:
            raise NMTError("--merge joins finished shards: drop --shard")
        return merge(args)
    if not args.checkpoint:
        raise NMTError("--checkpoint is required (except with --merge)")
    for flag, value in (
        ("--chunk-lines", args.chunk_lines),
        ("--max-source-len", args.max_source_len or 1),
        ("--workers", 1 if args.workers == "auto" else args.workers),
    ):
        if value < 1:
            raise NMTError(f"{flag} must be positive, got {value}")
    if args.wait_ms < 0:
        raise NMTError(f"--wait-ms must be 0 or more, got {args.wait_ms:g}")
    ranked = torchrun_shard()
    if ranked is not None and args.shard is not None:
        raise NMTError("--shard: under torchrun every rank takes its shard from RANK and WORLD_SIZE; drop --shard")
    shard, local_rank = ranked if ranked is not None else (args.shard, 0)
    if shard is not None:
        check_files(args, "torchrun" if ranked is not None else "--shard")
    start = time.perf_counter()
    if args.engine == "ctranslate2":
        translator = _ct2_translator(args)
    else:
        threads = args.threads or torch.get_num_threads()
        device = shard_device(resolve_device(args.device), local_rank)
        args.workers = resolve_workers(args.workers, threads, device.type)
        if args.threads > 0 or args.workers > 1:
            torch.set_num_threads(max(1, threads // args.workers))
        translator = Translator.from_checkpoints(
            args.checkpoint,
            device=device,
            search=overrides(args),
            max_source_len=args.max_source_len,
            need_attention=args.alignments is not None,
            alignment_layer=args.alignment_layer,
            alignment_heads=args.alignment_heads,
            seed=args.seed,
            precision=args.precision or InferencePrecision.fp32,
            workers=args.workers,
        )
    loaded = time.perf_counter()
    if not translator.cfg.sampling:
        # The library ignores sampling settings when it searches; on the command line they are a mistake.
        given = [f for f in ("topk", "topp", "temperature") if getattr(args, f"sampling_{f}") is not None]
        if given:
            raise NMTError(f"--sampling-{given[0]} only applies to sampling: add --sampling")
    nbest = translator.cfg.nbest

    def render(t) -> list[bytes]:
        parts = [format_translation(t, nbest).encode("utf-8")]
        if args.alignments is not None:
            parts.append((translator.links(t, threshold=args.alignment_threshold) + "\n").encode("utf-8"))
        return parts

    if shard is not None:
        translate_shard(args, translator, shard, render)
        if ranked is not None and shard.index == 0:
            merge_when_complete(args, shard.count)
        _summary(args, translator, start, loaded, f" (shard {shard})")
        return 0
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_input(args.input))
        out = stack.enter_context(open_output(args.output))
        align = stack.enter_context(open_output(args.alignments)) if args.alignments else None
        name = "<stdin>" if args.input == "-" else args.input
        reader = CountingLines(src)
        size = regular_file_size(src)  # None for a pipe or a terminal
        lines = decode_lines(reader, name=name, errors=args.errors)
        if size is None:  # interactive: translate what has arrived (see arrivals)
            groups = arrivals(lines, size=args.chunk_lines, wait=args.wait_ms / 1000)
            if is_terminal(src) and not args.quiet:
                print(f"{PROG}: type a sentence and press Enter (Ctrl-D ends)", file=sys.stderr)
        else:
            groups = chunks(lines, args.chunk_lines)
        bar = _progress_bar(args, src)
        stack.callback(lambda: bar is not None and bar.close())
        ends: list[int] = [0]  # the last line number of the group being translated

        def counted(groups: Iterator[list[str]]) -> Iterator[list[str]]:
            for group in groups:
                ends[0] += len(group)
                if bar is not None and size:  # a file: lines so far scaled by the share of its bytes read
                    bar.total = max(ends[0], round(ends[0] * size / max(reader.bytes, 1)))
                    bar.refresh()
                yield group

        progress = bar.update if bar is not None else None
        for t in translator.stream(counted(groups), chunked=True, progress=progress):
            out.write(format_translation(t, nbest).encode("utf-8"))
            if align is not None:
                align.write((translator.links(t, threshold=args.alignment_threshold) + "\n").encode("utf-8"))
            if t.line == ends[0]:  # the end of a group: let downstream (a person, a pipe) see it
                out.flush()
                if align is not None:
                    align.flush()
    _summary(args, translator, start, loaded, "")
    return 0


def _summary(args: argparse.Namespace, translator, start: float, loaded: float, what: str) -> None:
    if args.quiet:
        return
    st, wall = translator.stats, time.perf_counter() - loaded
    print(
        f"{PROG}: {st.sentences} sentences{what} in {wall:.2f} s (+{loaded - start:.2f} s loading): "
        f"{st.sentences / max(wall, 1e-9):.1f} sentences/s, {st.pieces / max(wall, 1e-9):.0f} tokens/s "
        f"(output pieces incl. EOS), {st.words / max(wall, 1e-9):.0f} words/s"
        + (f"; {len(st.truncated)} lines truncated" if st.truncated else ""),
        file=sys.stderr,
    )


def _progress_bar(args: argparse.Namespace, src: Any) -> Any:
    """A tqdm bar of lines on stderr when it is a terminal (not when a person types into stdin there), advanced
    after each batch; its total (hence an ETA) is set from the input's size once it is known to be a file."""
    if args.quiet or not sys.stderr.isatty() or is_terminal(src):
        return None
    from tqdm import tqdm

    return tqdm(unit=" sent", file=sys.stderr, desc=PROG, dynamic_ncols=True, leave=False)


def _ct2_translator(args: argparse.Namespace):
    """A :class:`~nmt.export.ct2_translate.CT2Translator`, after refusing the flags CTranslate2 cannot honour."""
    import torch

    from nmt.export.ct2_translate import CT2Translator, ct2_device, require_ctranslate2

    if len(args.checkpoint) > 1:
        raise NMTError("--engine ctranslate2 takes one export directory (no ensembles)")
    unsupported = [
        flag
        for flag, value in (
            ("--alignments", args.alignments),
            ("--alignment-layer", args.alignment_layer),
            ("--alignment-heads", args.alignment_heads),
            ("--alignment-threshold", args.alignment_threshold),
        )
        if value is not None
    ]
    if unsupported:
        raise NMTError(f"{', '.join(unsupported)}: not available with --engine ctranslate2 (use --engine nmt)")
    cores = args.threads or torch.get_num_threads()  # torch's default: the physical cores
    kind, _ = ct2_device(args.device, require_ctranslate2())
    args.workers = resolve_workers(args.workers, cores, kind)
    threads = 0  # CTranslate2's default, for one worker
    if args.threads or args.workers > 1:  # per worker, like --engine nmt's torch threads
        threads = max(1, cores // args.workers)
    return CT2Translator(
        args.checkpoint[0],
        search=overrides(args),
        device=args.device,
        precision=args.precision,
        threads=threads,
        workers=args.workers,
        max_source_len=args.max_source_len,
        seed=args.seed,
    )


def format_translation(t, nbest: int) -> str:
    """The output line(s) of one translation: the best text, or ``nbest`` tab-separated lines."""
    if nbest == 1:
        return t.texts[0] + "\n"
    if not t.src_ids:  # an empty line: N empty hypotheses
        return "".join(f"{t.line}\t{rank + 1}\t0.0000\t\n" for rank in range(nbest))
    rows = []
    for rank in range(nbest):
        if rank < len(t.hypotheses):
            score = t.hypotheses[rank].score
            rows.append(f"{t.line}\t{rank + 1}\t{score:.4f}\t{t.texts[rank]}\n")
        else:  # the length cap left fewer distinct outputs than asked for
            rows.append(f"{t.line}\t{rank + 1}\t-inf\t\n")
    return "".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, quiet=args.quiet)
    return run_cli(PROG, lambda: _translate(args))


if __name__ == "__main__":
    sys.exit(main())

"""Sharded ``nmt-translate`` (see :mod:`nmt.sharding` for the files): under ``torchrun`` every rank translates its
line range and rank 0 merges the shards once all are complete; with ``--shard K/N`` (e.g. a SLURM job array) each
job translates one range and ``--merge`` joins them afterwards.

Rank 0 waits for the other shards by reading their progress records on the shared file system rather than at a
process-group barrier: shards may finish hours apart (a barrier would time out), and the records are what a
merge checks anyway. If a rank fails, torchrun stops the others, rank 0 included.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nmt.errors import NMTError
from nmt.sharding import (
    Shard,
    ShardWriter,
    count_lines,
    fingerprint,
    line_range,
    merge_shards,
    parse_shard,
    record_path,
    shard_count,
)

if TYPE_CHECKING:
    import torch

    from nmt.translate import Translation, Translator

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # how often rank 0 looks at the other shards' progress records
# Flags that do not change a shard's lines: a shard may resume with different values.
NEUTRAL = {"input", "output", "quiet", "threads", "workers", "chunk_lines", "shard", "merge", "search_fields"}


def add_shard_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--shard",
        type=_shard_arg,
        metavar="K/N",
        help="translate only shard K (0-based) of N line ranges of --input into OUTPUT.shard-K-of-N; a rerun resumes "
        "it. Then join the N shards with --merge (torchrun shards by rank by itself)",
    )
    group.add_argument(
        "--merge",
        action="store_true",
        help="join the shards of --output (and --alignments) in order and remove them (no --checkpoint needed)",
    )


def _shard_arg(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def torchrun_shard() -> tuple[Shard, int] | None:
    """(this rank's shard, its local rank) under torchrun with several processes, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Shard(int(os.environ["RANK"]), world), int(os.environ.get("LOCAL_RANK", "0"))


def check_files(args: argparse.Namespace, how: str) -> None:
    """Sharding needs a seekable input file and output files (every shard reads the whole input)."""
    if args.input == "-":
        raise NMTError(f"{how} needs --input FILE: every shard reads its line range from the file (not stdin)")
    for flag, value in (("--output", args.output), ("--alignments", args.alignments)):
        if value == "-":
            raise NMTError(f"{how} needs {flag} FILE: the shards are written beside it (not stdout)")
    if not Path(args.input).is_file():
        raise NMTError(f"--input {args.input}: no such file")


def shard_device(device: torch.device, local_rank: int) -> torch.device:
    """A rank's own GPU (``cuda`` without an index -> ``cuda:LOCAL_RANK``); other devices unchanged."""
    import torch

    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def _settings(args: argparse.Namespace) -> dict:
    """What the lines of a shard depend on: every flag but the neutral ones, and the checkpoints' files."""
    settings = {k: str(v) for k, v in sorted(vars(args).items()) if k not in NEUTRAL}
    for path in args.checkpoint:
        st = Path(path).stat()
        settings[f"checkpoint:{Path(path).resolve()}"] = f"{st.st_size}:{st.st_mtime_ns}"
    return settings


def translate_shard(
    args: argparse.Namespace,
    translator: Translator,
    shard: Shard,
    render: Callable[[Translation], list[bytes]],
) -> None:
    """Translate ``shard``'s lines of ``args.input`` into its shard files, resuming an interrupted run.

    ``render`` turns one translation into the bytes of each output (translations, then alignments if asked).
    """
    from nmt.translate import decode_lines

    start, end = line_range(count_lines(args.input), shard)
    outputs = [args.output] + ([args.alignments] if args.alignments else [])
    with ShardWriter(outputs, shard, end - start, fingerprint(args.input, _settings(args))) as writer:
        if writer.complete:
            log.info("shard %s of %s is complete already (%d lines)", shard, args.output, end - start)
            return
        first = start + writer.done  # 0-based input line to go on from
        if writer.done:
            log.info("shard %s: resuming after %d of %d lines", shard, writer.done, end - start)
        with open(args.input, "rb") as f:
            raw = itertools.islice(f, first, end)
            lines = decode_lines(raw, name=args.input, errors=args.errors, first_line=first + 1)
            for t in translator.stream(lines, chunk_lines=args.chunk_lines, first_line=first + 1):
                writer.write(render(t))
                if (t.line - first) % args.chunk_lines == 0 or t.line == end:  # a chunk's last line
                    writer.commit(t.line - start)


def merge_when_complete(args: argparse.Namespace, count: int) -> None:
    """Rank 0: wait until every shard's record says complete, then merge."""
    outputs = [args.output] + ([args.alignments] if args.alignments else [])
    waiting = set(range(count))
    while waiting:
        for index in sorted(waiting):
            try:
                record = json.loads(record_path(args.output, Shard(index, count)).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not started yet, or being replaced
            if record["done"] >= record["lines"]:
                waiting.discard(index)
        if waiting:
            time.sleep(POLL_SECONDS)
    merge_shards(outputs, count)


def merge(args: argparse.Namespace) -> int:
    """``--merge``: join the shards of --output (and --alignments) found on disk."""
    if args.output == "-":
        raise NMTError("--merge needs --output FILE (the output whose shards to join)")
    outputs = [args.output] + ([args.alignments] if args.alignments else [])
    count = shard_count(args.output)
    merge_shards(outputs, count)
    if not args.quiet:
        print(f"nmt-translate: merged {count} shards into {', '.join(outputs)}", file=sys.stderr)
    return 0

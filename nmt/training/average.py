"""Checkpoint averaging: the mean of several checkpoints' weights, as one loadable checkpoint.

Averaging the last few checkpoints of a run usually gains a little BLEU over the last one alone
(Vaswani et al. 2017 averaged the last 5 or 20). The result keeps the newest checkpoint's config and tokenizer and
drops the resume-only parts (optimizer, RNG, loader), so it serves translation, not resuming.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nmt.checkpoint import (
    check_same_direction,
    check_same_vocabulary,
    load_checkpoint,
    save_checkpoint,
)
from nmt.errors import CheckpointError

_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def step_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``step_N.pt`` files in ``directory`` as (N, path), oldest first."""
    found = [(int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def last_checkpoints(run_dir: str | Path, n: int | None = None) -> list[Path]:
    """The newest ``n`` step checkpoints of a run directory (or of its ``checkpoints/`` folder).

    Args:
        run_dir: the run directory, or its ``checkpoints/`` folder.
        n: how many; None: as many as the run keeps (``train.keep_last`` in the newest checkpoint's config), or all
            there are when the run is shorter than that.

    Raises:
        CheckpointError: no step checkpoints, or fewer than ``n``.
    """
    run_dir = Path(run_dir)
    directory = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    found = step_checkpoints(directory)
    if not found:
        raise CheckpointError(f"no step_N.pt checkpoints in {directory}")
    if n is None:
        kept = load_checkpoint(found[-1][1])["config"].get("train", {}).get("keep_last")
        n = min(int(kept), len(found)) if isinstance(kept, int) and kept > 0 else len(found)
    if len(found) < n:
        raise CheckpointError(
            f"asked for the last {n} checkpoints, but {directory} holds only {len(found)} (a run keeps "
            "train.keep_last of them, 3 by default: raise it when training to average more)"
        )
    return [p for _, p in found[-n:]]


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Average the model weights of ``paths`` (floating-point tensors in float64, then back to their dtype).

    Integer buffers are taken from the last checkpoint. All checkpoints must translate the same language pair in
    the same direction with the same vocabulary, and hold the same tensors (names, shapes, dtypes: the same model).

    Returns:
        A checkpoint dict (``format`` added by :func:`save_checkpoint`) with ``averaged_from`` listing the inputs.

    Raises:
        CheckpointError: a checkpoint cannot be read, or differs from the first one (the message says in what).
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    sums: dict[str, torch.Tensor] = {}
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for i, path in enumerate(paths):
        state = load_checkpoint(path)
        model = state["model"]
        if i == 0:
            first = state
            sums = {k: v.double().clone() if v.is_floating_point() else v for k, v in model.items()}
        else:
            check_same_model(path, state, paths[0], first)
            for k, v in model.items():
                sums[k] = sums[k] + v.double() if v.is_floating_point() else v
        last = state
    averaged = {k: (v / len(paths)).to(last["model"][k].dtype) if v.is_floating_point() else v for k, v in sums.items()}
    return {
        "step": last["step"],
        "config": last["config"],
        "tokenizer": last["tokenizer"],
        "model": averaged,
        "averaged_from": [str(p) for p in paths],
    }


def check_same_model(path: str | Path, state: dict[str, Any], ref_path: str | Path, ref: dict[str, Any]) -> None:
    """Refuse to average ``state`` with ``ref`` unless both are the same model of the same language pair and
    direction with the same vocabulary; the message names the checkpoint and what differs."""
    purpose = "averaging"
    check_same_direction(path, state["config"], ref_path, ref["config"], purpose=purpose)
    check_same_vocabulary(path, state["tokenizer"], ref_path, ref["tokenizer"], purpose=purpose)
    mine, theirs = state["model"], ref["model"]
    differences = [f"{k} only in {ref_path}" for k in theirs if k not in mine]
    differences += [f"{k} only in {path}" for k in mine if k not in theirs]
    differences += [
        f"{k} is {_describe(mine[k])} in {path} but {_describe(theirs[k])} in {ref_path}"
        for k in mine
        if k in theirs and (mine[k].shape != theirs[k].shape or mine[k].dtype != theirs[k].dtype)
    ]
    if differences:
        settings = _model_differences(state["config"], ref["config"])
        raise CheckpointError(
            f"{path} is a different model than {ref_path}, so their weights cannot be averaged: "
            f"{len(differences)} tensors differ, e.g. {'; '.join(differences[:3])}"
            + (f" (model settings: {settings})" if settings else "")
        )


def _describe(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def _model_differences(config: dict[str, Any], ref: dict[str, Any]) -> str:
    a, b = config.get("model", {}), ref.get("model", {})
    return ", ".join(
        f"model.{k} {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
    )


def average_to_file(paths: Sequence[str | Path], output: str | Path) -> Path:
    """Average ``paths`` and write the result atomically to ``output``."""
    save_checkpoint(average_checkpoints(paths), output)
    return Path(output)

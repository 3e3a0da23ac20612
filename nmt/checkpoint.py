"""Checkpoints: one self-contained file, written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python types only:
``format``, ``step``, ``config`` (:func:`nmt.config.to_dict` of the whole run config), ``model`` (state dict),
``tokenizer`` (SentencePiece model bytes, see :meth:`nmt.data.tokenizer.Tokenizer.to_state`), and for
resuming ``optimizer``, ``scheduler``, ``scaler``, ``rng``, ``loader`` and ``trainer`` (counters, best score).
Loading never unpickles arbitrary objects, so an untrusted file cannot run code.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from nmt.config import NMTConfig, config_from_dict
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError
from nmt.models import build_model
from nmt.models.base import Seq2Seq

log = logging.getLogger(__name__)

FORMAT = "nmt-checkpoint-1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: temporary file in the same directory, fsync, rename.

    A crash at any moment leaves either the old file or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def link_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` the same checkpoint as ``src`` atomically: a hard link (no second write of the bytes), or a
    copy where the file system has no links. Replacing ``dst`` never leaves it missing or torn."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``), with a clear error for every way it can be bad."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        # Every file save_checkpoint writes is a zip archive; anything else (garbage, a torn copy, a
        # legacy pickle) would reach the unpickler, whose errors on junk bytes are arbitrary.
        raise CheckpointError(f"cannot read checkpoint {path}: it is truncated or corrupt (not a zip archive)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any global that is not a tensor or plain type: nothing was executed.
        first = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain Python types "
            f"(loading it could run code). {first}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: it is truncated or corrupt ({e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nmt checkpoint (no format tag {FORMAT!r})")
    for key in ("config", "model", "tokenizer", "step"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}")
    return state


def checkpoint_config(state: dict[str, Any]) -> NMTConfig:
    return config_from_dict(state["config"])


def load_for_inference(path: str | Path, device: str | torch.device = "cpu") -> tuple[Seq2Seq, Tokenizer, NMTConfig]:
    """Checkpoint -> (model in eval mode on ``device``, tokenizer, config). Needs nothing but the file."""
    model, tokenizer, cfg = model_from_state(load_checkpoint(path), path)
    return model.to(device), tokenizer, cfg


def model_from_state(state: dict[str, Any], path: str | Path) -> tuple[Seq2Seq, Tokenizer, NMTConfig]:
    """A loaded checkpoint -> (model in eval mode on the CPU, tokenizer, config); ``path`` names it in errors."""
    cfg = checkpoint_config(state)
    tokenizer = Tokenizer.from_state(state["tokenizer"])
    model = build_model(cfg.model, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match its own model config: {e}") from None
    return model.eval(), tokenizer, cfg

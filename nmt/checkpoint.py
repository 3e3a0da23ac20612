"""Checkpoints: one self-contained file, written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python types only:
``format``, ``step``, ``config`` (:func:`nmt.config.to_dict` of the whole run config), ``model`` (state dict),
``tokenizer`` (SentencePiece model bytes, see :meth:`nmt.data.tokenizer.Tokenizer.to_state`), and for
resuming ``optimizer``, ``scheduler``, ``scaler``, ``rng``, ``loader`` and ``trainer`` (counters, best score).
Loading never unpickles arbitrary objects, so an untrusted file cannot run code, and it first checks the CRC-32
that the zip container stores for every record (``torch.load`` does not): bytes damaged after saving are refused
instead of giving wrong weights. A failed write (a full disk) leaves the previous file in place and says why.

Checkpoints meant to be used together (an ensemble, an average, the two directions of bidirectional alignment) are
checked for the same language pair, vocabulary and, where weights are mixed, model shape:
:func:`check_same_direction`, :func:`check_reverse_direction`, :func:`check_same_vocabulary`.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import pickle
import shutil
import struct
import tempfile
import zipfile
import zlib
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
TMP_SUFFIX = ".tmp"  # save_checkpoint writes .NAME.XXXXXXXX.tmp, then renames it
LINK_SUFFIX = ".link"  # link_checkpoint makes .NAME.PID.link, then renames it


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: temporary file in the same directory, fsync, rename.

    A crash at any moment leaves either the old file or the new one, never a torn file.

    Raises:
        CheckpointError: the file cannot be written (a full disk, a read-only or missing directory); the
            temporary file is removed and a previous ``path`` is left as it was.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
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
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = _os_error(e) if isinstance(e, OSError | RuntimeError) else None
        if cause is None:  # not a failed write: a bug (or Ctrl-C) keeps its traceback
            raise
        raise write_error(path, cause) from None


def _os_error(error: BaseException) -> OSError | None:
    """The OSError behind ``error``: itself, or the one torch's writer hit (torch reports a failed write of a file
    object as ``RuntimeError: ... unexpected pos N vs M``, with the OSError only as the exception's context)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def write_error(path: Path, error: OSError) -> CheckpointError:
    """A clear error for a checkpoint that could not be written, saying whether a previous one is intact."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        why = f"the disk is full ({error.strerror}); free some space or set another run directory"
    else:
        why = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    kept = f"; the previous {path.name} is intact" if path.exists() else ""
    return CheckpointError(f"cannot write checkpoint {path}: {why}{kept}")


def link_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` the same checkpoint as ``src`` atomically: a hard link (no second write of the bytes), or a
    copy where the file system has no links. Replacing ``dst`` never leaves it missing or torn."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}{LINK_SUFFIX}")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(dst, e) from None
        raise


def leftover_files(directory: str | Path) -> list[Path]:
    """Temporary files that a killed writer left in ``directory`` (``.NAME.*.tmp``, ``.NAME.*.link``).

    Only safe to delete while no other process writes there (see :mod:`nmt.training.rundir`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for suffix in (TMP_SUFFIX, LINK_SUFFIX) for p in directory.glob(f".*{suffix}") if p.is_file())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``), with a clear error for every way it can be bad."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        # Every file save_checkpoint writes is a zip archive; anything else (garbage, a torn copy, a
        # legacy pickle) would reach the unpickler, whose errors on junk bytes are arbitrary.
        raise CheckpointError(f"cannot read checkpoint {path}: it is truncated or corrupt (not a zip archive)")
    verify_records(path)
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


def verify_records(path: str | Path) -> None:
    """Check the CRC-32 of every record (the pickle and each tensor's bytes) of a checkpoint's zip container.

    ``torch.save`` stores each record uncompressed with its CRC-32, as the zip format asks, but ``torch.load`` never
    checks them: bytes damaged after saving (a bad copy, a failing disk) load silently and give wrong or garbled
    translations. Checking costs one pass of zlib's CRC-32 over the file (``scripts/bench_checkpoint_crc.py``).

    Raises:
        CheckpointError: a record is damaged or cut off, naming the file and the record.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as archive:
            size = os.fstat(f.fileno()).st_size
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                for info in archive.infolist():
                    _verify_record(path, archive, view, size, info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: it is truncated or corrupt ({e})") from None


def _verify_record(path: Path, archive: zipfile.ZipFile, view: mmap.mmap, size: int, info: zipfile.ZipInfo) -> None:
    header = view[info.header_offset : info.header_offset + zipfile.sizeFileHeader]
    if len(header) < zipfile.sizeFileHeader or header[:4] != zipfile.stringFileHeader:
        raise CheckpointError(
            f"checkpoint {path} is damaged: the header of record {info.filename!r} at byte {info.header_offset} is "
            "broken (the file changed after it was written: copy it again or use another checkpoint)"
        )
    name_len, extra_len = struct.unpack("<2H", header[26:30])  # the local header's own lengths (torch pads here)
    start = info.header_offset + zipfile.sizeFileHeader + name_len + extra_len
    end = start + info.compress_size
    if end > size:
        raise CheckpointError(f"cannot read checkpoint {path}: it is truncated (record {info.filename!r} is cut off)")
    if info.compress_type == zipfile.ZIP_STORED:
        with memoryview(view) as whole:
            crc = zlib.crc32(whole[start:end])  # no copy; zlib releases the GIL on large buffers
    else:  # not written by torch.save; zipfile inflates and checks the CRC itself (BadZipFile if wrong)
        with archive.open(info) as record:
            while record.read(1 << 20):
                pass
        crc = info.CRC
    if crc != info.CRC:
        raise CheckpointError(
            f"checkpoint {path} is damaged: record {info.filename!r} (bytes {start}-{end}) fails its CRC-32 check "
            "(the file changed after it was written: copy it again or use another checkpoint)"
        )


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


# --------------------------------------------------------------------------------------------- used together
def direction(config: NMTConfig | dict[str, Any]) -> str:
    """``de->en``: the language pair and direction a checkpoint translates (its ``data.src_lang/tgt_lang``), from
    its typed config or the plain ``config`` entry."""
    if isinstance(config, dict):
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        return f"{data.get('src_lang', '?')}->{data.get('tgt_lang', '?')}"
    return f"{config.data.src_lang}->{config.data.tgt_lang}"


def check_same_direction(
    path: str | Path,
    config: NMTConfig | dict[str, Any],
    ref_path: str | Path,
    ref_config: NMTConfig | dict[str, Any],
    *,
    purpose: str,
) -> None:
    """Refuse a checkpoint of another language pair or direction than ``ref_path``'s (``purpose``: "an ensemble")."""
    if direction(config) != direction(ref_config):
        raise CheckpointError(
            f"{path} translates {direction(config)} but {ref_path} translates {direction(ref_config)}: "
            f"{purpose} needs checkpoints of one language pair and direction"
        )


def check_reverse_direction(path: str | Path, config: NMTConfig, ref_path: str | Path, ref_config: NMTConfig) -> None:
    """Refuse a reverse model (for bidirectional alignment) that does not translate target -> source of ``ref``."""
    wanted = f"{ref_config.data.tgt_lang}->{ref_config.data.src_lang}"
    if direction(config) != wanted:
        raise CheckpointError(
            f"the reverse model {path} translates {direction(config)}, but {ref_path} translates "
            f"{direction(ref_config)}: bidirectional alignment needs a reverse model that translates {wanted}"
        )


def check_same_vocabulary(
    path: str | Path, state: dict[str, bytes], ref_path: str | Path, ref_state: dict[str, bytes], *, purpose: str
) -> None:
    """Refuse a checkpoint whose SentencePiece model(s) (``tokenizer`` entry) differ from ``ref_path``'s."""
    if state != ref_state:
        raise CheckpointError(
            f"{path} uses a different vocabulary ({describe_vocabulary(state)}) than {ref_path} "
            f"({describe_vocabulary(ref_state)}): {purpose} needs checkpoints trained with the same SentencePiece "
            "model, whose piece ids mean the same"
        )


def describe_vocabulary(state: dict[str, bytes]) -> str:
    """``joint SentencePiece model of 500 pieces`` / ``source 8000 + target 8000 pieces`` (for messages)."""
    try:
        tok = Tokenizer.from_state(state)
    except CheckpointError:
        return "an unreadable SentencePiece model"
    if tok.joint:
        return f"joint SentencePiece model of {tok.src_vocab_size} pieces"
    return f"source {tok.src_vocab_size} + target {tok.tgt_vocab_size} pieces"

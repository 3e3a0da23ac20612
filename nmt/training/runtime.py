"""The process a training runs in: its device, threads, numeric settings, log file and signal handling.

Nothing here knows about models or data; :class:`nmt.training.trainer.Trainer` calls these once at start-up.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

import torch

from nmt.config import Device, Precision, TrainConfig
from nmt.errors import NMTError
from nmt.search import autocast_dtype
from nmt.training.metrics import measure_matmul_peak

log = logging.getLogger("nmt.training.trainer")


def resolve_device(choice: Device, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; under torchrun each rank takes GPU ``local_rank``."""
    if choice == Device.cuda and not torch.cuda.is_available():
        raise NMTError("train.device=cuda, but torch sees no CUDA device (use train.device=cpu or auto)")
    if choice == Device.cpu or (choice == Device.auto and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def configure_runtime(tc: TrainConfig, device: torch.device) -> None:
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores on Ampere+: ~fp32 accuracy for training
        torch.backends.cudnn.allow_tf32 = True
    if tc.precision == Precision.fp16 and device.type == "cpu":
        log.warning("train.precision=fp16 on the CPU is slow; bf16 is the CPU's fast format (AMX/avx512_bf16)")


def compile_for_training(model: torch.nn.Module, train_model: torch.nn.Module) -> torch.nn.Module:
    """What ``train.compile`` does, per model.

    - Transformer: ``train_model`` (the model, its guided-alignment wrapper, or DDP around either) is compiled
      whole, forward and backward, with dynamic shapes, so batches of every size and length share a graph
      (Dynamo recompiles a bounded number of times: the first batch, then once with sizes made symbolic). The
      loss stays outside (its own autograd function).
    - RNNs: trained eagerly, with a log line. Their decoder's Python loop over target positions would be
      unrolled into one graph per target length (a recompile for every new length until Dynamo's limit, then
      eager anyway), and packing the encoder's sequences needs the lengths on the host (a graph break).

    Args:
        model: the plain model (decides). train_model: what the training step calls (gets compiled).
    Returns:
        The module the training step should call.
    """
    from nmt.models.transformer import Transformer

    if isinstance(model, Transformer):
        log.info("train.compile: compiling the Transformer's training forward and backward (dynamic shapes)")
        return torch.compile(train_model, dynamic=True)
    log.info(
        "train.compile: %s trains eagerly (its decoder's per-position loop would recompile for every target "
        "length); only Transformers are compiled",
        type(model).__name__,
    )
    return train_model


def ensure_log_file(path: Path) -> logging.Handler | None:
    """Log to ``path`` unless a handler already does (Hydra's job logging writes ``train.log`` itself).

    Returns:
        The handler added (the caller removes it when done), or None.
    """
    root = logging.getLogger()
    nmt_log = logging.getLogger("nmt")
    if nmt_log.level == logging.NOTSET and root.level > logging.INFO:
        nmt_log.setLevel(logging.INFO)
    target = str(path.resolve())
    if any(getattr(h, "baseFilename", None) == target for h in root.handlers + nmt_log.handlers):
        return None
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    nmt_log.addHandler(handler)
    return handler


def matmul_peak(tc: TrainConfig, device: torch.device) -> float:
    """FLOP/s of a large matmul in the training precision (for the model-FLOPs share in the logs)."""
    if tc.matmul_peak_gflops > 0:
        return tc.matmul_peak_gflops * 1e9
    dtype = autocast_dtype(tc.precision) or torch.float32
    if device.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32
    return measure_matmul_peak(device, dtype)


class Signals:
    """SIGINT/SIGTERM turned into a flag the loop checks after each update (a second signal acts at once)."""

    def __init__(self) -> None:
        self.received = 0
        self._old: dict[int, Any] = {}

    def install(self) -> Signals:
        with contextlib.suppress(ValueError):  # not the main thread (e.g. a notebook worker): leave signals alone
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}


def catch_signals() -> Signals:
    return Signals().install()

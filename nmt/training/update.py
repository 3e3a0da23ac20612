"""One optimizer update: forward and backward over a group of batches, loss normalised over all their target
tokens on all ranks, gradient clipping, the schedule's learning rate, and non-finite updates skipped.

The optimizer, the learning-rate schedule and the fp16 gradient scaler live here (and in checkpoints, through
:meth:`Updater.state_dict`); :class:`nmt.training.trainer.Trainer` calls an :class:`Updater` once per step and
reads its figures with :meth:`Updater.settle`.

Host synchronisation. An update queues its work on the device and reads nothing back: the loss sums, token
counts, gradient norm and skip flag stay in one small device vector (all-reduced once under DDP, with the
signal flags), copied to the host without blocking. :meth:`Updater.settle` reads that vector; the trainer
settles update N after queueing update N+1 on a GPU (so the read never stalls the device), at once on the CPU.
The decision to skip a non-finite update is taken on the device: the fused Adam kernel reads a ``found_inf``
flag and leaves weights, moments and step count untouched (the mechanism ``GradScaler`` uses for fp16), so no
host read decides whether weights change. Only the bookkeeping (``nan_streak``, the warning, the stop after
``max_nan_steps``) waits for :meth:`settle`. fairseq and Megatron instead read a flag or the gradient norm on the
host every update; torchtitan reads nothing per update and has no skip at all.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nmt.config import Precision, TrainConfig
from nmt.data.batch import Batch
from nmt.errors import NMTError
from nmt.search import autocast
from nmt.training import distributed, guided
from nmt.training.loss import label_smoothed_nll
from nmt.training.optim import LRSchedule, build_optimizer, set_lr
from nmt.training.state import TrainerState

log = logging.getLogger("nmt.training.trainer")

# The per-update vector: summed over micro-batches, then over ranks (one all-reduce), then two device results.
FIELDS = ("tokens", "real", "loss", "nll", "align", "padded", "signal", "rows", "grad_norm", "skipped")
_LOSS, _ALIGN = FIELDS.index("loss"), FIELDS.index("align")


class TrainingError(NMTError):
    """Training cannot go on (non-finite losses, ...); the last good checkpoint is kept."""


@dataclass
class QueuedUpdate:
    """An update whose work is queued on the device and whose figures are not read yet.

    ``values`` holds :data:`FIELDS` (float64): a pinned host buffer that a non-blocking copy fills (``ready``
    records its end) on CUDA, the device vector itself on the CPU.
    """

    step: int
    lr: float
    values: Tensor
    ready: Any = None  # torch.cuda.Event on CUDA

    def read(self) -> dict[str, float]:
        if self.ready is not None:
            self.ready.synchronize()  # waits for this update only; later queued work goes on
        return dict(zip(FIELDS, self.values.tolist()))


class Updater:
    """Makes updates of ``model`` through ``train_model`` (the model itself, or wrapped: guided alignment,
    DDP, ``torch.compile``).

    Args:
        model: the plain model (its parameters are optimised and clipped).
        train_model: what the forward pass calls; returns logits, or (logits, attention) when ``guide``.
        guide: guided alignment training (batches carry links; :mod:`nmt.training.guided`).
        tc: the training settings. world_size: DDP ranks. device: where batches go.
        run_dir: named in the error when training stops.
        ddp: the DistributedDataParallel wrapper inside ``train_model`` (its ``no_sync`` skips the gradient
            all-reduce of all but the last accumulated batch), or None.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        train_model: nn.Module,
        guide: bool,
        tc: TrainConfig,
        world_size: int,
        device: torch.device,
        run_dir: Path,
        ddp: nn.Module | None = None,
    ) -> None:
        self.model, self.train_model, self.guide, self.tc = model, train_model, guide, tc
        self.world_size, self.device, self.run_dir, self.ddp = world_size, device, run_dir, ddp
        self.optimizer = build_optimizer(model.parameters(), tc)
        self.schedule = LRSchedule(tc)
        # The loss is a sum over tokens until after backward (see __call__), so fairseq's initial scale (2^7)
        # fits where GradScaler's default (2^16) would overflow the first updates.
        self.scaler = torch.amp.GradScaler(device.type, init_scale=2.0**7, enabled=tc.precision == Precision.fp16)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer, schedule and scaler states, as checkpoints store them."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])

    def __call__(self, batches: list[Batch], state: TrainerState, *, signal: int = 0) -> QueuedUpdate:
        """Queue one update over ``batches`` (gradient accumulation); read its figures with :meth:`settle`.

        The objective is the loss summed over target tokens; after backward the gradients are multiplied by
        world_size / (target tokens of all batches on all ranks), which DDP's averaging over ranks turns into the
        per-token mean (fairseq's order: the token count travels in the same all-reduce as the loss sums, after
        backward, instead of before the forward). Guided alignment adds weight × the mean loss per supervised
        attention row (:mod:`nmt.training.guided`). Non-finite updates are skipped on the device.
        """
        tc, device = self.tc, self.device
        self.train_model.train()
        padded = sum(b.src.numel() + b.tgt_out.numel() for b in batches)
        rows = sum(guided.supervised_rows(b.alignment) for b in batches) if self.guide else 0
        align_factor = self._align_factor(batches, rows) if self.guide else 0.0
        sums = []
        for i, batch in enumerate(batches):
            batch = batch.to(device, non_blocking=True)
            sync = i == len(batches) - 1 or self.ddp is None
            with contextlib.nullcontext() if sync else self.ddp.no_sync(), autocast(device, tc.precision):
                out = self.train_model(batch.src, batch.src_lengths, batch.tgt_in)
                logits, attention = out if self.guide else (out, None)
                loss, nll, tokens = label_smoothed_nll(logits, batch.tgt_out, smoothing=tc.label_smoothing)
            objective, align = loss, loss.new_zeros(())
            if self.guide:
                align = guided.alignment_loss(attention, batch.alignment)
                objective = objective + align * align_factor
            self.scaler.scale(objective).backward()
            real = batch.src_lengths.sum() + tokens
            sums.append(torch.stack([x.detach().double() for x in (tokens, real, loss, nll, align)]))
        host = _device_scalars([padded, signal, rows], device)  # filled on the device: no host-to-device copy
        stats = distributed.all_reduce_sum(torch.cat([torch.stack(sums).sum(0), host]))  # the update's all-reduce
        # DDP averaged the gradients over ranks: world_size / all tokens makes that the per-token mean.
        factor = (self.world_size / stats[0].clamp(min=1.0)).float()
        self.scaler.unscale_(self.optimizer)  # fp16: divides by the scale and records overflows; else a no-op
        grad_norm = self._normalise_and_clip(factor)
        bad_loss = ~torch.isfinite(stats[_LOSS] + stats[_ALIGN])  # global: the sums are over all ranks
        lr = self.schedule.lr(state.step + 1)
        set_lr(self.optimizer, lr)
        if self.scaler.is_enabled():
            # fp16: the scaler skips the step itself when the gradients overflowed (non-finite losses give
            # non-finite gradients), and update() must follow every unscale_(), skipped or not.
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped = bad_loss  # overflows are the scaler's business; only non-finite losses count as failures
        else:
            skipped = bad_loss | ~torch.isfinite(grad_norm)
            _step_unless(self.optimizer, skipped)
        self.optimizer.zero_grad(set_to_none=True)
        values = torch.cat([stats, grad_norm.double()[None], skipped.double()[None]])
        return _queue(state.step + 1, lr, values)

    def settle(self, update: QueuedUpdate, state: TrainerState) -> dict[str, float]:
        """Read a queued update's figures and do its bookkeeping: target tokens, the non-finite streak (a
        :class:`TrainingError` after ``train.max_nan_steps`` in a row).

        Returns:
            The update's figures: loss and nll per target token, tokens (all ranks), real and padded tokens,
            gradient norm, learning rate, and ``signal`` (non-zero when any rank received SIGINT/SIGTERM).
        """
        v = update.read()
        tokens = max(v["tokens"], 1.0)
        rows = max(v["rows"], 1.0)
        loss, nll = v["loss"] / tokens, v["nll"] / tokens
        if v["skipped"]:
            self._non_finite(state, update.step, loss, v["grad_norm"])
        else:
            state.nan_streak = 0
        state.tgt_tokens += int(tokens)
        figures = {"align_loss": v["align"] / rows, "align_rows": v["rows"]} if self.guide else {}
        return {
            **figures,
            "loss": loss,
            "nll": nll,
            "tokens": tokens,
            "real": v["real"],
            "padded": v["padded"],
            "grad_norm": v["grad_norm"],
            "lr": update.lr,
            "signal": v["signal"],
        }

    def _align_factor(self, batches: list[Batch], rows: int) -> float:
        """weight × (all target tokens) / (all supervised rows): after the per-token normalisation the
        alignment term is weight × its mean per supervised row. Both counts are known on the host before the
        forward; under DDP they are summed over ranks here (guided training's second all-reduce)."""
        counts = torch.tensor([sum(b.num_tgt_tokens for b in batches), rows], dtype=torch.float64)
        counts = distributed.all_reduce_sum(counts)
        return self.tc.alignment.weight * max(float(counts[0]), 1.0) / max(float(counts[1]), 1.0)

    def _normalise_and_clip(self, factor: Tensor) -> Tensor:
        """Multiply the gradients by ``factor`` and clip their norm to ``train.clip_norm`` in one pass.

        Returns:
            The norm of the normalised gradients before clipping (float32 0-d tensor on the device).
        """
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads, foreach=True) * factor
        coef = factor
        if self.tc.clip_norm > 0:  # torch's clip_grad_norm_ rule: scale by max_norm / (norm + 1e-6) when below 1
            coef = factor * torch.clamp(self.tc.clip_norm / (norm + 1e-6), max=1.0)
        if grads:
            torch._foreach_mul_(grads, coef.to(grads[0].dtype))
        return norm

    def _non_finite(self, state: TrainerState, step: int, loss: float, grad_norm: float) -> None:
        state.nan_streak += 1
        log.warning(
            "step %d: non-finite loss %.4g / gradient norm %.4g: update skipped (%d in a row, limit %d)",
            step, loss, grad_norm, state.nan_streak, self.tc.max_nan_steps,
        )  # fmt: skip
        if state.nan_streak >= self.tc.max_nan_steps:
            last = self.run_dir / "checkpoints" / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            raise TrainingError(
                f"the loss was not finite for {state.nan_streak} updates in a row (up to step {step}); "
                f"stopping ({kept}). Try a lower train.lr, train.clip_norm > 0, or train.precision=bf16/fp32."
            )


def _device_scalars(values: list[float], device: torch.device) -> Tensor:
    """Host numbers as a float64 vector on ``device``, each written by a fill (a plain ``torch.tensor(...,
    device=cuda)`` would be a synchronising copy from pageable memory)."""
    return torch.stack([torch.full((), float(v), dtype=torch.float64, device=device) for v in values])


def _step_unless(optimizer: torch.optim.Optimizer, skip: Tensor) -> None:
    """``optimizer.step()`` unless the 0-d bool ``skip`` is set, decided on the device where possible.

    Fused Adam/AdamW (what :func:`nmt.training.optim.build_optimizer` builds) read a ``found_inf`` tensor and
    leave parameters, moments and step counts untouched when it is 1: GradScaler's own protocol. Any other
    optimizer needs one host read of the flag.
    """
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = skip.float()  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
    elif not bool(skip):
        optimizer.step()


def _queue(step: int, lr: float, values: Tensor) -> QueuedUpdate:
    """Start copying ``values`` to the host without blocking (CUDA); on the CPU they are already there."""
    if values.device.type != "cuda":
        return QueuedUpdate(step, lr, values)
    host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    host.copy_(values, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return QueuedUpdate(step, lr, host, ready)

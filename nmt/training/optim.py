"""Optimizers and learning-rate schedules.

The schedule is a small object of our own rather than ``torch.optim.lr_scheduler``: the trainer sets the rate of
every parameter group before each update, the plateau rule reacts to dev scores (BLEU or loss), and its state is a
plain dict that resumes exactly (torch's ``ReduceLROnPlateau`` changed behaviour between releases and broke peers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from nmt.config import Optimizer, PlateauMetric, Schedule, TrainConfig


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over ``params`` with ``cfg.lr`` (the schedule overwrites the rate before every update)."""
    params = [p for p in params if p.requires_grad]
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": tuple(cfg.betas), "weight_decay": cfg.weight_decay}
    # One fused kernel per parameter (CUDA and CPU): on the CPU 3x faster than the foreach loop of small ops.
    kwargs["fused"] = all(p.is_cuda or p.device.type == "cpu" for p in params)
    match cfg.optimizer:
        case Optimizer.adam:
            return torch.optim.Adam(params, **kwargs)
        case Optimizer.adamw:
            return torch.optim.AdamW(params, **kwargs)
    raise AssertionError(cfg.optimizer)  # unreachable: OmegaConf validated the enum


class LRSchedule:
    """The learning rate as a function of the update number and of dev scores.

    - ``inverse_sqrt`` (Vaswani et al. 2017, fairseq's form): ``lr · min(t / w, sqrt(w / t))``: linear warm-up
      over ``w`` updates to the peak ``lr``, then decay with the inverse square root of the update number ``t``.
    - ``constant``: ``lr`` after a linear warm-up over ``w`` updates (none when ``w = 0``).
    - ``plateau``: ``lr`` (after the same warm-up), multiplied by ``plateau_factor`` whenever the dev metric
      (BLEU or loss) has not improved for ``plateau_patience`` evaluations in a row; never below ``min_lr``.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.kind = cfg.schedule
        self.peak = cfg.lr
        self.warmup = cfg.warmup_steps
        self.factor = cfg.plateau_factor
        self.patience = cfg.plateau_patience
        self.min_lr = cfg.min_lr
        self.higher_is_better = cfg.plateau_metric == PlateauMetric.bleu
        self.metric = cfg.plateau_metric
        self.scale = 1.0  # product of plateau reductions so far
        self.best: float | None = None
        self.bad_evals = 0

    def lr(self, step: int) -> float:
        """The rate for update number ``step`` (1-based: the first update is step 1)."""
        step = max(step, 1)
        if self.kind == Schedule.inverse_sqrt:
            w = max(self.warmup, 1)
            return self.peak * min(step / w, math.sqrt(w / step))
        warm = min(step / self.warmup, 1.0) if self.warmup > 0 else 1.0
        return max(self.peak * self.scale * warm, self.min_lr) if self.kind == Schedule.plateau else self.peak * warm

    def on_eval(self, *, bleu: float, loss: float) -> bool:
        """Feed one evaluation's dev scores. Returns True when the plateau rule lowered the rate."""
        if self.kind != Schedule.plateau:
            return False
        value = bleu if self.metric == PlateauMetric.bleu else loss
        better = self.best is None or (value > self.best if self.higher_is_better else value < self.best)
        if better:
            self.best, self.bad_evals = value, 0
            return False
        self.bad_evals += 1
        if self.bad_evals < self.patience or self.peak * self.scale <= self.min_lr:
            return False
        self.scale *= self.factor
        self.bad_evals = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_evals = int(state["bad_evals"])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

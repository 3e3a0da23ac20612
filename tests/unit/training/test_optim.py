"""Learning-rate schedules and optimizers: the formulas at hand-picked steps, the plateau rule, exact state."""

from __future__ import annotations

import pytest
import torch

from nmt.config import Optimizer, PlateauMetric, Schedule, TrainConfig
from nmt.training.optim import LRSchedule, build_optimizer, set_lr


def test_inverse_sqrt_warms_up_linearly_then_decays_with_inverse_square_root():
    s = LRSchedule(TrainConfig(schedule=Schedule.inverse_sqrt, lr=1e-3, warmup_steps=100))
    assert s.lr(1) == pytest.approx(1e-5)
    assert s.lr(50) == pytest.approx(5e-4)
    assert s.lr(100) == pytest.approx(1e-3)  # the peak, at the end of warm-up
    assert s.lr(400) == pytest.approx(5e-4)  # sqrt(100 / 400) = 1/2
    assert s.lr(10_000) == pytest.approx(1e-4)
    assert max(s.lr(t) for t in range(1, 1000)) == pytest.approx(1e-3)


def test_constant_schedule_with_and_without_warmup():
    assert LRSchedule(TrainConfig(schedule=Schedule.constant, lr=2e-3, warmup_steps=0)).lr(1) == 2e-3
    s = LRSchedule(TrainConfig(schedule=Schedule.constant, lr=2e-3, warmup_steps=4))
    assert [s.lr(t) for t in (1, 2, 4, 5, 1000)] == pytest.approx([5e-4, 1e-3, 2e-3, 2e-3, 2e-3])
    assert not s.on_eval(bleu=0.0, loss=9.0) and not s.on_eval(bleu=0.0, loss=9.0)  # never reacts to scores


def plateau(metric: PlateauMetric) -> LRSchedule:
    cfg = TrainConfig(
        schedule=Schedule.plateau,
        plateau_metric=metric,
        lr=1e-3,
        warmup_steps=0,
        plateau_factor=0.5,
        plateau_patience=2,
        min_lr=2e-4,
    )
    return LRSchedule(cfg)


def test_plateau_on_bleu_halves_after_patience_evaluations_without_improvement():
    s = plateau(PlateauMetric.bleu)
    assert not s.on_eval(bleu=10.0, loss=5.0)
    assert not s.on_eval(bleu=12.0, loss=5.0)  # improvement
    assert not s.on_eval(bleu=11.0, loss=1.0)  # 1 bad evaluation (a better loss does not count)
    assert s.on_eval(bleu=12.0, loss=1.0)  # 2 bad (equal is not better): halve
    assert s.lr(500) == pytest.approx(5e-4)
    assert not s.on_eval(bleu=11.0, loss=1.0)  # the counter restarted after the reduction
    assert s.on_eval(bleu=11.0, loss=1.0)
    assert s.lr(500) == pytest.approx(2.5e-4)
    s.on_eval(bleu=0.0, loss=1.0)
    s.on_eval(bleu=0.0, loss=1.0)
    assert s.lr(500) == pytest.approx(2e-4)  # clamped at min_lr
    assert not s.on_eval(bleu=0.0, loss=1.0) and not s.on_eval(bleu=0.0, loss=1.0)  # no reduction below min_lr


def test_plateau_on_loss_wants_lower_values():
    s = plateau(PlateauMetric.loss)
    s.on_eval(bleu=0.0, loss=4.0)
    assert not s.on_eval(bleu=50.0, loss=3.0)  # lower loss is an improvement, BLEU is ignored
    s.on_eval(bleu=50.0, loss=3.5)
    assert s.on_eval(bleu=50.0, loss=3.0)
    assert s.lr(1) == pytest.approx(5e-4)


def test_schedule_state_round_trip_continues_identically():
    a = plateau(PlateauMetric.bleu)
    for bleu in (5.0, 4.0, 4.0, 3.0):
        a.on_eval(bleu=bleu, loss=0.0)
    b = plateau(PlateauMetric.bleu)
    b.load_state_dict(a.state_dict())
    for bleu in (2.0, 9.0, 1.0, 1.0):
        assert a.on_eval(bleu=bleu, loss=0.0) == b.on_eval(bleu=bleu, loss=0.0)
        assert a.lr(10) == b.lr(10)


@pytest.mark.parametrize(("kind", "cls"), [(Optimizer.adam, torch.optim.Adam), (Optimizer.adamw, torch.optim.AdamW)])
def test_build_optimizer_uses_config_and_skips_frozen_parameters(kind, cls):
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer=kind, lr=3e-4, betas=[0.8, 0.9], weight_decay=0.1))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["betas"] == (0.8, 0.9) and group["weight_decay"] == 0.1
    assert len(group["params"]) == 1  # the frozen bias is not optimised
    set_lr(opt, 1e-5)
    assert group["lr"] == 1e-5

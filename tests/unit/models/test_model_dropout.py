"""The CPU dropout: identity at inference, the documented rate and scale in training, gradient through the mask."""

from __future__ import annotations

import pytest
import torch

from nmt.models.dropout import Dropout


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_drops_the_rounded_rate_and_rescales(p: float) -> None:
    drop = Dropout(p)
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    rate = round(p * 256) / 256
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(rate, abs=2e-3)
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - rate)))
    assert y.mean().item() == pytest.approx(1.0, abs=5e-3)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(x·m)/dx = m
    torch.manual_seed(0)
    assert torch.equal(drop(x), y), "not reproducible from the seed"
    # Masks of consecutive elements are independent: no pattern at the int64 word boundaries.
    byte_rates = (y == 0).float().view(-1, 8).mean(0)
    assert ((byte_rates - rate).abs() < 0.01).all()


def test_identity_in_eval_mode_and_at_zero_rate() -> None:
    x = torch.randn(5, 7, dtype=torch.bfloat16)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0)(x) is x
    y = Dropout(0.5)(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)

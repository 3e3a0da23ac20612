"""label_smoothed_nll against the textbook formula: -Σ_v q(v) log p(v) with q = (1 - ε)·onehot + ε/V."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.specials import PAD_ID
from nmt.training.loss import label_smoothed_nll


def direct(logits: torch.Tensor, target: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    V = logits.size(-1)
    loss = nll = torch.zeros((), dtype=torch.float64)
    n = 0
    for b in range(target.size(0)):
        for t in range(target.size(1)):
            if target[b, t] == PAD_ID:
                continue
            log_p = logits[b, t].double().log_softmax(-1)
            q = torch.full((V,), eps / V, dtype=torch.float64)
            q[target[b, t]] += 1 - eps
            loss = loss - (q * log_p).sum()
            nll = nll - log_p[target[b, t]]
            n += 1
    return loss, nll, n


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_matches_formula_and_ignores_padding(eps: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 3
    target = torch.randint(1, 11, (3, 5), generator=g)
    target[1, 3:] = PAD_ID
    target[2, 1:] = PAD_ID
    loss, nll, n = label_smoothed_nll(logits, target, smoothing=eps)
    exp_loss, exp_nll, exp_n = direct(logits, target, eps)
    assert n.item() == exp_n == 9 and n.dtype == torch.int64 and n.ndim == 0  # a tensor: no device sync
    torch.testing.assert_close(loss.double(), exp_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nll.double(), exp_nll, rtol=1e-5, atol=1e-5)
    ref = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=PAD_ID, reduction="sum", label_smoothing=eps)
    torch.testing.assert_close(loss, ref)
    # Padding positions get no gradient, whatever their logits.
    logits.requires_grad_(True)
    label_smoothed_nll(logits, target, smoothing=eps)[0].backward()
    assert (logits.grad[2, 1:] == 0).all() and (logits.grad[0] != 0).any()


def test_float32_under_bf16_autocast() -> None:
    logits = torch.randn(2, 4, 50).bfloat16()
    target = torch.randint(4, 50, (2, 4))
    with torch.autocast("cpu", torch.bfloat16):
        loss, nll, n = label_smoothed_nll(logits, target, smoothing=0.1)
    assert loss.dtype == nll.dtype == torch.float32 and n == 8
    torch.testing.assert_close(loss, direct(logits.float(), target, 0.1)[0].float(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab", [13, 40_000])  # 40k: the CPU path works in blocks of 6 rows
def test_gradient_equals_autograd_of_cross_entropy(dtype: torch.dtype, vocab: int) -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(4, 6, vocab, generator=g) * 2
    target = torch.randint(1, vocab, (4, 6), generator=g)
    target[0, 2:] = PAD_ID
    ours = base.to(dtype).requires_grad_(True)
    loss, nll, _ = label_smoothed_nll(ours, target, smoothing=0.2)
    (2.5 * loss).backward()
    assert ours.grad.dtype == dtype and not nll.requires_grad
    ref = base.to(dtype).float().requires_grad_(True)
    ce = F.cross_entropy(ref.transpose(1, 2), target, ignore_index=PAD_ID, reduction="sum", label_smoothing=0.2)
    (2.5 * ce).backward()
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(ours.grad.float(), ref.grad, atol=tol, rtol=tol)
    torch.testing.assert_close(loss, ce.to(loss.dtype), atol=1e-3, rtol=1e-5)

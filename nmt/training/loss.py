"""Label-smoothed cross-entropy (Szegedy et al. 2016), summed over real target tokens.

The (tokens × vocabulary) logits are the largest tensor of a training step, so the loss is one autograd
function that reads them as few times as possible and never builds a log-probability or smoothed-target
tensor of that size: the forward keeps three numbers per token (log-sum-exp, target logit, logit sum), the
backward writes the gradient (softmax − q)·g straight into a tensor of the logits' dtype. On the CPU both run
over blocks of rows that fit in the L2 cache. Forward+backward on 4,096 × 8,000 logits, 2 threads: 45 ms
(float32) / 43 ms (bf16) against 61 / 79 ms for ``F.cross_entropy(label_smoothing=...)`` and 70 / 86 ms for
log-softmax + gather.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nmt.specials import PAD_ID

_CPU_BLOCK = 1 << 18  # elements per block of rows on the CPU (1 MiB of float32)


class _SmoothedNLL(torch.autograd.Function):
    """(N, V) logits, (N,) targets, (N,) keep -> (loss_sum, nll_sum) in float32; only loss_sum has a gradient."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, keep: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        N, V = logits.shape
        rows = N if logits.is_cuda else max(1, _CPU_BLOCK // V)
        lse = logits.new_empty(N, dtype=torch.float32)
        total, gold = torch.empty_like(lse), torch.empty_like(lse)
        for i in range(0, N, rows):
            x = logits[i : i + rows].float()  # (rows, V), in cache
            torch.logsumexp(x, dim=-1, out=lse[i : i + rows])
            torch.sum(x, dim=-1, out=total[i : i + rows])
            gold[i : i + rows] = x.gather(-1, target[i : i + rows, None]).squeeze(-1)
        nll = lse - gold  # -log p(y)
        loss = (1.0 - eps) * nll + eps * (lse - total / V) if eps > 0 else nll  # -Σ q log p
        zero = nll.new_zeros(())
        nll_sum = torch.where(keep, nll, zero).sum()
        ctx.mark_non_differentiable(nll_sum)
        ctx.save_for_backward(logits, lse, target, keep)
        ctx.eps, ctx.rows = eps, rows
        return torch.where(keep, loss, zero).sum(), nll_sum

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, grad_nll: Tensor) -> tuple[Tensor | None, ...]:
        del grad_nll  # nll_sum is a statistic, not a training signal
        logits, lse, target, keep = ctx.saved_tensors
        eps, rows = ctx.eps, ctx.rows
        N, V = logits.shape
        g = torch.where(keep, grad_loss, 0.0)[:, None]  # (N, 1): padding rows get no gradient
        g_uniform, g_gold = g * (eps / V), g * -(1.0 - eps)
        grad = torch.empty_like(logits)
        in_place = logits.dtype == torch.float32  # else a float32 block, cast once into the gradient
        for i in range(0, N, rows):
            # (softmax - q) g with q = (1 - eps) onehot(y) + eps / V
            block = torch.sub(
                logits[i : i + rows], lse[i : i + rows, None], out=grad[i : i + rows] if in_place else None
            )
            block.exp_().mul_(g[i : i + rows]).sub_(g_uniform[i : i + rows])
            block.scatter_add_(-1, target[i : i + rows, None], g_gold[i : i + rows])
            if not in_place:
                grad[i : i + rows] = block
        return grad, None, None, None


def label_smoothed_nll(
    logits: Tensor, target: Tensor, *, smoothing: float, pad_id: int = PAD_ID
) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-entropy against (1 − ε)·onehot(y) + ε/V (the uniform share includes y, as in PyTorch's
    ``cross_entropy(label_smoothing=ε)``), summed over positions whose target is not ``pad_id``.

    Computed in float32 whatever the logits' dtype (bf16 under autocast); the gradient comes back in the
    logits' dtype.

    Args:
        logits: (B, T, V) unnormalised scores.
        target: (B, T) int64 gold ids (``tgt_out``), ``pad_id`` where there is none.
        smoothing: ε in [0, 1).
        pad_id: the id whose positions are ignored.
    Returns:
        loss_sum (float32 scalar, differentiable), nll_sum (float32 scalar, the unsmoothed negative
        log-likelihood, for perplexity; no gradient) and n_tokens (int64 scalar on the logits' device: real
        target tokens; a tensor, not an int, so that the training step never waits for the device).
    """
    keep = target != pad_id
    V = logits.size(-1)
    loss_sum, nll_sum = _SmoothedNLL.apply(logits.reshape(-1, V), target.reshape(-1), keep.reshape(-1), smoothing)
    return loss_sum, nll_sum, keep.sum()

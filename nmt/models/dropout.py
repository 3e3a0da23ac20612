"""Dropout with a cheaper random mask on the CPU.

PyTorch's CPU dropout draws one Bernoulli sample per element: on a (4096, 256) activation, forward+backward
take 7.2 ms against 2.3 ms here (2 threads), and a Transformer training step makes 17 such calls (its
step time drops 8 % in float32, 36 % under bf16 autocast). Here the mask comes from random bytes (eight per
int64 draw) compared with a threshold, so the drop rate is rounded to a multiple of 1/256 (0.1 -> 26/256 =
0.1016, 0.3 -> 77/256 = 0.3008); kept values are scaled by 1 / (1 - that rate), so expectations are unchanged.
On CUDA this is ``F.dropout`` (a fused kernel), and so it is under ``torch.compile``: Dynamo cannot trace
``random_`` (each call was a graph break), and Inductor generates the mask inside its fused kernels anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Dropout(nn.Module):
    """Drop-in for :class:`torch.nn.Dropout` (identity in eval mode or with p = 0)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 256)  # bytes below this are dropped

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        words = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(256.0 / (256 - self.threshold))

    def extra_repr(self) -> str:
        return f"p={self.p} (effective {self.threshold / 256:.4f} on the CPU)"

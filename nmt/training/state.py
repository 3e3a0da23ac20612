"""Everything that makes a resumed run continue exactly where it stopped, as checkpoint-safe plain data.

Checkpoints load with ``weights_only=True``, so every state here is tensors, numbers, strings, lists and dicts:
NumPy's generator key becomes a tensor and Python's Mersenne-Twister tuple a list.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """Every random generator the training loop touches (dropout, sampling, shuffling)."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:  # a different GPU count: keep what matters, this process's device
            torch.cuda.set_rng_state(cuda[min(torch.cuda.current_device(), len(cuda) - 1)])


@dataclass
class TrainerState:
    """The training loop's counters, saved in every checkpoint under ``trainer``."""

    step: int = 0  # updates made (including skipped non-finite ones)
    epoch: int = 0
    tgt_tokens: int = 0  # real target tokens trained on, summed over ranks
    train_seconds: float = 0.0  # wall time spent in training steps (not validation), over all sessions
    wall_seconds: float = 0.0  # total wall time over all sessions
    best_bleu: float = -1.0
    best_step: int = 0
    bad_evals: int = 0  # evaluations in a row without a dev BLEU improvement (early stopping)
    last_eval_step: int = 0
    nan_streak: int = 0
    finished: str = ""  # why training ended ("max_steps", "early_stopping", "max_epochs"); empty while it runs
    world_size: int = 1
    saved_steps: list[int] = dataclasses.field(default_factory=list)  # step_N.pt files kept on disk

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TrainerState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})

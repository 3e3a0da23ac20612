"""Where a model runs: device names as users write them (``auto``, ``cpu``, ``cuda``, ``cuda:1``) -> torch devices."""

from __future__ import annotations

import torch

from nmt.errors import NMTError


def resolve_device(name: str | torch.device, *, option: str = "device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a device that cannot be used is a user error.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a torch device (returned as it is).
        option: how the user gave it, for the message (``--device`` on the command line).
    Raises:
        NMTError: CUDA asked for without a GPU, or a name torch does not know.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NMTError(f"{option} {name}: no CUDA device is available (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise NMTError(f"{option} {name}: {e}") from None

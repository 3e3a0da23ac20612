"""Configurations as plain dicts (what checkpoints store) and back."""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any

from nmt.config.model import ModelConfig, RNNConfig, TransformerConfig
from nmt.config.ranges import ConfigError
from nmt.config.root import NMTConfig


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass tree as plain Python types (enums as their values): what checkpoints store."""

    def plain(v: Any) -> Any:
        if isinstance(v, Enum):
            return v.value
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _build(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild dataclass ``cls`` from plain values: nested dataclasses and enums by their field types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {key!r} for {cls.__name__}")
        kwargs[key] = _coerce(hints[key], value)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return _build(option, value)  # type: ignore[arg-type]
        if isinstance(option, type) and issubclass(option, Enum):
            return option(value)
    return value


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    arch = values.get("arch")
    if arch == "rnn":
        return _build(RNNConfig, values)
    if arch == "transformer":
        return _build(TransformerConfig, values)
    raise ConfigError(f"unknown model arch {arch!r}")


def config_from_dict(values: dict[str, Any]) -> NMTConfig:
    """Inverse of :func:`to_dict` for the root config (checkpoints)."""
    values = dict(values)
    model = model_config_from_dict(values.pop("model"))
    return _build(NMTConfig, {**values, "model": model})

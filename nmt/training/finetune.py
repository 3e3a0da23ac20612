"""Fine-tuning: a new run that starts from the weights of a trained checkpoint (``train.init_from``).

The checkpoint decides what the weights mean, so the new run takes its model shape and its tokenizer (the data
is encoded with that tokenizer). A config that contradicts them is refused, naming each key; only settings that
leave the network's shape and vocabulary alone may differ (:data:`MODEL_FREE`, :data:`TOKENIZER_FREE`). The rest
of the run is new: step 0, a new optimizer and learning-rate schedule (warm-up included), a new data order and no
best score yet; with ``train.init_reset=schedule`` the Adam moments of a resumable checkpoint are kept too.

``nmt-train`` builds the config with :func:`adopt` (model and tokenizer sections from the checkpoint, except keys
given on the command line); :class:`nmt.training.trainer.Trainer` then reads the checkpoint with :func:`load_init`,
which checks the config against it once more (library callers get the same refusal).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from nmt.checkpoint import load_checkpoint
from nmt.config import (
    ConfigError,
    InitReset,
    NMTConfig,
    TokenizerConfig,
    config_from_dict,
    model_config_from_dict,
    to_dict,
)
from nmt.errors import CheckpointError

log = logging.getLogger("nmt.training.trainer")

MODEL_FREE = frozenset({"dropout", "attention_dropout", "alignment_layer", "alignment_heads"})
"""Model settings a fine-tuning run may change: regularisation and which attention is read, not the shape."""
TOKENIZER_FREE = frozenset({"sampling_alpha", "sampling_nbest"})
"""Tokenizer settings a fine-tuning run may change: subword sampling in training, not the vocabulary."""


def contradictions(cfg: NMTConfig, source: dict[str, Any], *, keys: Collection[str] | None = None) -> list[str]:
    """The model and tokenizer settings of ``cfg`` that contradict a checkpoint's config ``source``.

    Args:
        cfg: the run's config.
        source: the checkpoint's config (:func:`nmt.config.to_dict` form, as stored).
        keys: compare only these dotted keys (``model.d_model``); None compares every key outside
            :data:`MODEL_FREE` / :data:`TOKENIZER_FREE`.

    Returns:
        One ``model.d_model=256 but the config asks for 512`` per difference (empty when they agree).
    """
    found = []
    for section, free in (("model", MODEL_FREE), ("tokenizer", TOKENIZER_FREE)):
        part = getattr(cfg, section)
        theirs, mine, defaults = source.get(section, {}), to_dict(part), to_dict(type(part)())
        names = [k for k in mine if k not in free and (keys is None or f"{section}.{k}" in keys)]
        if section == "model" and mine.get("arch") != theirs.get("arch"):
            names = ["arch"] if names else []  # the other keys of another architecture mean nothing there
        for name in names:
            # A key newer than the checkpoint has its default there.
            if mine[name] != theirs.get(name, defaults[name]):
                found.append(
                    f"{section}.{name}={theirs.get(name, defaults[name])!r} but the config asks for {mine[name]!r}"
                )
    return found


def refuse(path: str | Path, found: list[str]) -> ConfigError:
    return ConfigError(
        f"train.init_from={path} has " + "; ".join(found) + ". A fine-tuning run takes the model shape and the "
        "tokenizer of its checkpoint: drop these settings (or train from scratch without train.init_from)"
    )


def adopt(cfg: NMTConfig, source: dict[str, Any], *, keep: Collection[str] = (), path: str | Path = "") -> NMTConfig:
    """``cfg`` with the model and tokenizer sections of the checkpoint config ``source``.

    Args:
        cfg: the composed config.
        source: the checkpoint's config.
        keep: dotted keys the user set explicitly (``model.dropout``, ``tokenizer.sampling_alpha``); they keep
            ``cfg``'s value, which must agree with the checkpoint unless the key is free to change.
        path: the checkpoint, for messages.

    Raises:
        ConfigError: a kept key contradicts the checkpoint (every such key is named).
    """
    found = contradictions(cfg, source, keys=set(keep))
    if found:
        raise refuse(path, found)
    sections = {}
    for section in ("model", "tokenizer"):
        mine, values = to_dict(getattr(cfg, section)), dict(source[section])
        schema = TokenizerConfig if section == "tokenizer" else type(model_config_from_dict(values))
        known = {f.name for f in dataclasses.fields(schema)}
        for key in sorted(keep):
            name = key.removeprefix(f"{section}.")
            if not key.startswith(f"{section}.") or name not in mine:
                continue
            if name not in known:
                raise ConfigError(
                    f"train.init_from={path} holds a model of type {values.get('arch')!r}: {key} does not apply"
                )
            values[name] = mine[name]
        sections[section] = values
    tokenizer_keys = {f.name for f in dataclasses.fields(TokenizerConfig)}  # a key an older version had is dropped
    sections["tokenizer"] = {k: v for k, v in sections["tokenizer"].items() if k in tokenizer_keys}
    return config_from_dict({**to_dict(cfg), **sections})  # typed again (enums), every check run again


def load_init(cfg: NMTConfig, *, resuming: bool = False) -> dict[str, Any] | None:
    """Read ``train.init_from`` and check ``cfg`` against it.

    Args:
        cfg: the run's config (``train.init_from`` set).
        resuming: the run directory has a checkpoint of its own, which wins: a restarted fine-tuning run resumes
            exactly where it stopped, and the file named by ``init_from`` is not read at all.

    Returns:
        The checkpoint (its ``model`` weights, ``tokenizer`` and, for ``init_reset=schedule``, ``optimizer``), or
        None when resuming.

    Raises:
        CheckpointError: unreadable, or lacking the optimizer state that ``init_reset=schedule`` needs.
        ConfigError: the config contradicts the checkpoint's model shape or tokenizer.
    """
    tc = cfg.train
    if resuming:
        log.info("train.init_from=%s: not read, the run resumes from its own checkpoint", tc.init_from)
        return None
    path = Path(str(tc.init_from)).expanduser()
    state = load_checkpoint(path)
    found = contradictions(cfg, state["config"])
    if found:
        raise refuse(path, found)
    if tc.init_reset == InitReset.schedule and "optimizer" not in state:
        raise CheckpointError(
            f"train.init_reset=schedule keeps the optimizer state, but {path} holds weights only (best.pt and "
            "averages do): use the run's last.pt or a step_N.pt, or train.init_reset=all"
        )
    old = state["config"]["data"]
    if (old.get("src_lang"), old.get("tgt_lang")) != (cfg.data.src_lang, cfg.data.tgt_lang):
        log.warning(
            "train.init_from=%s was trained on %s->%s, this run is %s->%s: its tokenizer was trained on other "
            "languages", path, old.get("src_lang"), old.get("tgt_lang"), cfg.data.src_lang, cfg.data.tgt_lang,
        )  # fmt: skip
    log.info(
        "FINE-TUNING from %s (step %d of its run%s): its weights, model shape and tokenizer; %s, step 0",
        path, state["step"], f", dev BLEU {state['dev_bleu']:.2f}" if "dev_bleu" in state else "",
        "its optimizer moments with a new schedule" if tc.init_reset == InitReset.schedule
        else "a new optimizer and schedule",
    )  # fmt: skip
    return state


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:  # the config stored in the checkpoint does not describe its weights
        raise CheckpointError(f"train.init_from={path}: its weights do not fit its own model config: {e}") from None


def load_optimizer_moments(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Take the per-parameter state (Adam's moments and step counts) of a checkpoint's optimizer, keeping this
    run's hyper-parameters (``torch``'s ``load_state_dict`` would restore the old learning rate, betas and
    weight decay with them)."""
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state["optimizer"]["state"], "param_groups": current["param_groups"]})

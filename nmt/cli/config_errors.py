"""``nmt-train``'s configuration mistakes as one line each: unknown keys (with close matches), Hydra's and
OmegaConf's errors (bad values, missing presets, override syntax), never a traceback.

Two gaps of Hydra are closed here. A key appended with ``+`` (``+train.lrr=1``, the fix Hydra's own message
suggests for a misspelt key) is accepted by Hydra even under a structured schema and silently ignored by
``OmegaConf.to_object``: :func:`check_known_keys` refuses every key that the schema of its node does not define.
And Hydra prints its errors over several lines with advice that does not fit (``To append to your config use
+key=value``) and exits 1 like a crash: :func:`error_line` turns them into one line, and ``nmt-train`` exits 2.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from nmt.config import ConfigError, RNNConfig, TransformerConfig
from nmt.errors import NMTError

MODEL_SCHEMAS = {"rnn": RNNConfig, "transformer": TransformerConfig}  # for "a key of the other model" hints


def is_config_error(e: BaseException) -> bool:
    """Whether ``e`` is a configuration mistake (Hydra, OmegaConf or our own), not a bug."""
    return isinstance(e, HydraException | OmegaConfBaseException | NMTError)


# ----------------------------------------------------------------------------------------------- unknown keys
def unknown_key_message(full_key: str, schema: Any) -> str:
    """``unknown key train.lrr (did you mean train.lr?)``: close matches among the fields of ``schema``."""
    parent, _, key = full_key.rpartition(".")
    prefix = f"{parent}." if parent else ""
    names = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {' or '.join(prefix + c for c in close)}?"
    else:
        hint = f"{getattr(schema, '__name__', 'this section')} has no such field; `nmt-train --cfg job` shows every key"
    if parent == "model":
        other = [arch for arch, cls in MODEL_SCHEMAS.items() if cls is not schema and key in _fields(cls)]
        if other:
            hint = f"{full_key} is a key of model={other[0]}, not of this model"
    return f"unknown key {full_key} ({hint})"


def _fields(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse keys that the schema of their node does not define (appended with ``+key=value``).

    Nodes without a dataclass schema (free-form dicts such as ``data.hf.data_files``) take any key.

    Raises:
        ConfigError: naming every unknown key, with close matches.
    """
    problems = [unknown_key_message(key, schema) for key, schema in _unknown_keys(cfg, "")]
    if problems:
        raise ConfigError("; ".join(problems))


def _unknown_keys(node: DictConfig, path: str) -> list[tuple[str, Any]]:
    schema = OmegaConf.get_type(node)
    known = _fields(schema) if dataclasses.is_dataclass(schema) else None
    found = []
    for key in node:
        full_key = f"{path}{key}"
        if known is not None and key not in known:
            found.append((full_key, schema))
            continue
        if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
            continue
        child = node[key]
        if isinstance(child, DictConfig):
            found += _unknown_keys(child, f"{full_key}.")
    return found


# ----------------------------------------------------------------------------------------------- one line
def error_line(e: BaseException) -> str:
    """A Hydra/OmegaConf/nmt configuration error as one line that names the key and what to do."""
    if isinstance(e, NMTError):
        return str(e)
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else None
    if isinstance(e, OmegaConfBaseException):
        cause = e
    unknown = isinstance(cause, ConfigAttributeError | ConfigKeyError) and " not in " in str(cause)
    if unknown and getattr(cause, "full_key", None):  # "Key 'lrr' not in 'TrainConfig'"
        return unknown_key_message(str(cause.full_key), getattr(cause, "object_type", None))
    if isinstance(e, MissingConfigException):
        first = _lines(str(e))[0].split("': ", 1)[-1] if "In '" in str(e) else _lines(str(e))[0]
        group = (e.missing_cfg_file or "").rpartition("/")[0]
        options = [o for o in (e.options or []) if not o.endswith("_schema")]
        if group and options:
            return f"{first}; the {group} presets are: {', '.join(options)}"
        return first
    if isinstance(e, OverrideParseException):
        return f"cannot parse an override: {_lines(str(e))[0]} (quote values with special characters; see {_GRAMMAR})"
    if cause is not None:
        key = getattr(cause, "full_key", None)
        message = _lines(str(cause))[0]
        return f"{key}: {message}" if key else message
    lines = [line.rstrip(".") for line in _lines(str(e)) if not line.startswith("To append to your config")]
    return "; ".join(lines)


_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def _lines(text: str) -> list[str]:
    """The message lines, without OmegaConf's ``full_key:``/``object_type=`` details and Hydra's search path."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Config search path"):
            break
        if line and not line.startswith(("full_key:", "object_type=", "reference_type=", "See https://hydra.cc")):
            out.append(line)
    return out or [text.strip()]

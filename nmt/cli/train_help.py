"""``nmt-train --help``: one page generated from the schemas and the presets, so it cannot drift from them.

- Options: every field of every schema in :mod:`nmt.config` (nested ones as ``data.hf.path``), with its default
  and the one-line ``help`` of its field metadata (the one source of truth; SearchConfig's also make the flags
  of ``nmt-translate``).
- Config groups and presets: the YAML files of ``configs/`` (never the ``*_schema`` entries of Hydra's
  ConfigStore), each described by the first sentence of its leading comment; defaults from ``train.yaml``.

Hydra's own page stays available as ``--hydra-help``.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
import typing
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nmt import __version__
from nmt.cli.common import EXIT_STATUS_HELP
from nmt.config import NMTConfig, RNNConfig, TransformerConfig

WIDTH = 118  # the page's width (the README's code blocks and a wide terminal)
KEY_COLUMN = 32
GROUPS = ("data", "tokenizer", "model", "train")  # in train.yaml's defaults list: GROUP=PRESET
PLUS_GROUPS = ("experiment", "sweep")  # not in it: +GROUP=PRESET

USAGE = """\
usage:
  nmt-train [GROUP=PRESET ...] [KEY=VALUE ...]        train one model; the run directory is runs/<name>/<time>/
  nmt-train -m [GROUP=A,B ...] [KEY=V1,V2 ...]        a sweep: one job per combination (multirun/<name>/<time>/<job>/)
  nmt-train [GROUP=PRESET ...] [KEY=VALUE ...] --cfg job [--resolve]     print the composed config, train nothing
  nmt-train --help | --hydra-help | --version"""

ABOUT = """\
configs/train.yaml composes one preset of each config group below over the typed schemas of nmt/config/, where
every default lives; KEY=VALUE overrides any option, GROUP=PRESET picks a preset. A misspelt key, a wrong type or an
impossible value stops the run before any data is read. Running again with the same hydra.run.dir resumes from its
checkpoints/last.pt (train.max_steps is a total, not a number of further updates); SIGINT/SIGTERM save a checkpoint.
The run directory holds train.log, metrics.jsonl, checkpoints/{last,best,step_N}.pt, tensorboard/ and results.json."""

EXAMPLES = """\
examples:
  nmt-train                                           a Transformer on Multi30k German->English (the defaults)
  nmt-train model=rnn_bahdanau train=cpu              an RNN with Bahdanau attention, bf16 autocast on the CPU
  nmt-train +experiment=m30k_de_en_transformer        the README's reference recipe (data, model, schedule, limits)
  nmt-train data=parallel data.train=c/train data.valid=c/dev 'data.test=[c/test]' data.src_lang=fr
  nmt-train hydra.run.dir=runs/x train.max_steps=40000      resume runs/x and train on to 40,000 updates
  nmt-train train.init_from=runs/x/checkpoints/best.pt data=iwslt14_de_en train.lr=2e-4   fine-tune on another corpus
  nmt-train -m model=transformer,rnn_luong train.lr=5e-4,1e-3         a sweep of 4 jobs, one after another
  nmt-train -m +sweep=cpu_parallel model=transformer,rnn_bahdanau     2 jobs at a time (Hydra's joblib launcher)
  torchrun --nproc_per_node=2 -m nmt.cli.train train=gpu              data parallel on 2 GPUs"""

PLUS = """\
Why the +: GROUP=PRESET changes an entry of train.yaml's defaults list (data, tokenizer, model, train), while
+GROUP=PRESET adds one. experiment and sweep have no entry (most runs use neither), so they take the + (without
it Hydra stops: "Could not override 'experiment'. No match in the defaults list")."""

HYDRA = """\
Hydra's own flags and keys (--hydra-help): -m/--multirun, --cfg job|hydra|all, --resolve, --info, -cp/-cn,
hydra.run.dir=DIR (the run directory), hydra.sweep.dir=DIR, hydra.launcher.*, hydra.sweeper.*, hydra.verbose=true."""


def render(config_dir: str | Path) -> str:
    """The whole page for the presets in ``config_dir`` (``configs/``)."""
    config_dir = Path(config_dir)
    parts = [
        f"nmt-train (nmt {__version__}): train a translation model; a Hydra application configured by overrides",
        USAGE,
        _wrap(ABOUT),
        EXAMPLES,
        _groups(config_dir),
        _wrap(PLUS),
        _options(),
        _wrap(HYDRA),
        EXIT_STATUS_HELP,
    ]
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------- presets
# A sentence ends at a full stop and a space before anything but a digit ("et al. 2015"), except after e.g./i.e.
SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bal)(?<=\.)\s+(?=[^\s0-9])")


def presets(config_dir: Path, group: str) -> list[tuple[str, str]]:
    """``(name, first sentence of its leading comment)`` for each ``configs/GROUP/*.yaml``, by name."""
    return [(path.stem, describe(path)) for path in sorted((config_dir / group).glob("*.yaml"))]


def describe(path: Path) -> str:
    """The first sentence of a YAML file's leading comment (``# @package`` lines and indented examples skipped)."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line[1:]
        if text.strip().startswith("@package") or text.startswith("   "):  # "#   nmt-train ..." examples
            if words:
                break
            continue
        words.append(text.strip())
    first = SENTENCE_END.split(" ".join(words), maxsplit=1)[0]
    return first[:-1] + "." if first.endswith(":") else first  # "..., for one GPU:" before an example


def _defaults(config_dir: Path) -> dict[str, Any]:
    """Group -> preset chosen by ``train.yaml``'s defaults list."""
    chosen: dict[str, Any] = {}
    for entry in OmegaConf.to_container(OmegaConf.load(config_dir / "train.yaml")).get("defaults", []):  # type: ignore[union-attr]
        if isinstance(entry, dict):
            for key, value in entry.items():
                chosen[key.removeprefix("optional ")] = value
    return chosen


def _groups(config_dir: Path) -> str:
    defaults = _defaults(config_dir)
    lines = ["config groups (GROUP=PRESET reads configs/GROUP/PRESET.yaml; * marks the default):"]
    for group in GROUPS:
        default = defaults.get(group)
        lines.append(f"  {group}=" + ("   (none by default)" if default is None else ""))
        for name, about in presets(config_dir, group):
            lines.append(_entry(f"    {name}{' *' if name == default else ''}", about))
    optim = ", ".join(name for name, _ in presets(config_dir, "optim"))
    lines.append(
        _entry(
            "  optim",
            f"not chosen on the command line: follows model= (train.yaml: optional optim: ${{model}}); the learning-"
            f"rate schedule of each model ({optim})",
        )
    )
    lines.append("")
    lines.append("presets added with + (experiment and sweep are not in train.yaml's defaults list):")
    for group in PLUS_GROUPS:
        what = (
            "a whole recipe: data, model, schedule and limits"
            if group == "experiment"
            else "with -m: a launcher or sweeper"
        )
        lines.append(f"  +{group}=   ({what})")
        for name, about in presets(config_dir, group):
            lines.append(_entry(f"    {name}", about))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- options
SECTION_TITLES = {
    "data": "data.*: the corpora",
    "tokenizer": "tokenizer.*: SentencePiece",
    "model": "model.*: the network",
    "train": "train.*: optimisation, schedule, limits, checkpoints, hardware",
    "search": "search.*: decoding (the final test; the checkpoint's defaults for nmt-translate and nmt-evaluate)",
}


def options() -> Iterator[tuple[str, Any, str]]:
    """``(dotted key, default, help)`` for every field of every schema, nested ones flattened; the model keys of
    both architectures (``model.d_model`` and ``model.cell`` both appear)."""
    yield from _fields(NMTConfig, "")


def _fields(cls: type, prefix: str) -> Iterator[tuple[str, Any, str]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if key == "model":
            for schema in (TransformerConfig, RNNConfig):
                yield from _fields(schema, "model.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            yield from _fields(type(default), f"{key}.")
        else:
            yield key, default, _help(f, hints[f.name])


def _help(f: dataclasses.Field, hint: Any) -> str:
    text = f.metadata.get("help", "")
    kinds = typing.get_args(hint) or (hint,)
    enum = next((k for k in kinds if isinstance(k, type) and issubclass(k, Enum)), None)
    if enum is not None:
        text = f"{text}; one of {' | '.join(e.value for e in enum)}"
    return text


def _options() -> str:
    lines = ["options (KEY=VALUE; the defaults of nmt/config/, which presets may change: --cfg job shows the result):"]
    section = None
    for key, default, text in options():
        head = key.split(".")[0] if "." in key else ""
        if head != section:
            section = head
            if head == "model":
                lines.append("  model.*: the network; model=transformer (the default) has")
            elif head:
                lines.append(f"  {SECTION_TITLES[head]}")
        if key == "model.arch" and default == "rnn":
            lines.append("  model.*: model=rnn_bahdanau | rnn_luong | rnn_none have")
        lines.append(_entry(f"    {key}", f"{text} (default: {_value(default)})"))
    return "\n".join(lines)


def _value(value: Any) -> str:
    """A default as it is written on the command line."""
    if isinstance(value, Enum):
        return str(value.value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return "''"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


# --------------------------------------------------------------------------------------------- layout
def _entry(key: str, text: str) -> str:
    """``key`` in its column and ``text`` wrapped beside it (on the next line when the key is too long)."""
    indent = " " * KEY_COLUMN
    if len(key) >= KEY_COLUMN - 1:
        return key + "\n" + textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent)
    return textwrap.fill(text, WIDTH, initial_indent=key.ljust(KEY_COLUMN), subsequent_indent=indent)


def _wrap(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), WIDTH)

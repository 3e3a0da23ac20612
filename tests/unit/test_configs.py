"""Every shipped YAML composes into a valid typed config (Hydra's compose API, as ``nmt-train`` would see it)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from nmt.cli.train import RUN_TIME_ENV, config_dir, to_typed
from nmt.config import ConfigError, EarlyStop, NMTConfig, Precision, RNNConfig, Schedule, TransformerConfig

CONFIGS = Path(config_dir())
PRESETS = sorted(p.relative_to(CONFIGS) for p in CONFIGS.rglob("*.yaml") if p.parent != CONFIGS)
GLOBAL_GROUPS = {"experiment", "sweep"}  # `# @package _global_` presets, added with +group=name


def override(preset: Path) -> str:
    group, name = preset.parent.as_posix(), preset.stem
    return f"+{group}={name}" if group in GLOBAL_GROUPS else f"{group}={name}"


def composed(overrides: list[str], *, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra)


def test_the_shipped_tree_has_the_groups_train_yaml_names():
    groups = {p.parent.as_posix() for p in PRESETS}
    assert {"data", "tokenizer", "model", "optim", "train"} <= groups
    assert {p.stem for p in PRESETS if p.parent.as_posix() == "model"} >= {
        "rnn_bahdanau",
        "rnn_luong",
        "rnn_none",
        "transformer",
    }


def test_root_config_composes_to_the_documented_default():
    cfg = to_typed(composed([]))
    assert isinstance(cfg, NMTConfig) and isinstance(cfg.model, TransformerConfig)
    assert cfg.data.train == "multi30k/train" and cfg.tokenizer.vocab_size == 8000
    assert cfg.train.schedule == Schedule.inverse_sqrt


@pytest.mark.parametrize("preset", PRESETS, ids=str)
def test_every_preset_composes_into_a_valid_typed_config(preset: Path):
    cfg = to_typed(composed([override(preset)]))
    assert isinstance(cfg, NMTConfig)
    OmegaConf.structured(cfg)  # and back: the typed tree is what checkpoints store


@pytest.mark.parametrize(
    ("model", "schedule", "lr"),
    [
        ("transformer", Schedule.inverse_sqrt, 5e-4),
        ("rnn_bahdanau", Schedule.plateau, 1e-3),
        ("rnn_luong", Schedule.plateau, 1e-3),
    ],
)
def test_the_model_choice_brings_its_schedule_and_command_line_values_win(model, schedule, lr):
    cfg = to_typed(composed([f"model={model}", "train=cpu"]))
    assert (cfg.train.schedule, cfg.train.lr, cfg.train.precision) == (schedule, lr, Precision.bf16)
    assert isinstance(cfg.model, RNNConfig) == model.startswith("rnn")
    assert to_typed(composed([f"model={model}", "train.lr=0.01"])).train.lr == 0.01


def test_typos_wrong_types_and_impossible_values_fail_before_training():
    with pytest.raises(ConfigCompositionException, match="lrr"):
        composed(["train.lrr=1"])
    with pytest.raises(ConfigCompositionException, match=r"train\.lr"):
        composed(["train.lr=fast"])
    with pytest.raises(ConfigCompositionException, match="precision"):
        composed(["train.precision=fp8"])
    with pytest.raises(ConfigCompositionException, match="precision"):
        composed(["train.precision=int8"])  # a decoding format only (nmt-translate --precision int8)
    with pytest.raises(ConfigCompositionException, match="heads"):
        composed(["model=rnn_luong", "model.heads=4"])  # a Transformer key on an RNN
    with pytest.raises(ConfigError, match="divisible"):
        to_typed(composed(["model.heads=3"]))


def test_search_options_compose_and_are_checked():
    cfg = to_typed(composed(["search.early_stop=none", "search.min_len=3", "search.no_repeat_ngram=2"]))
    assert (cfg.search.early_stop, cfg.search.min_len, cfg.search.no_repeat_ngram) == (EarlyStop.none, 3, 2)
    assert to_typed(composed([])).search.early_stop == EarlyStop.bound
    with pytest.raises(ConfigCompositionException, match="early_stop"):
        composed(["search.early_stop=never"])
    with pytest.raises(ConfigError, match="sampling_topp"):
        to_typed(composed(["search.sampling=true", "search.beam_size=1", "search.sampling_topp=0"]))


def test_hydra_settings_are_pinned_and_the_run_dir_time_can_be_shared(monkeypatch):
    monkeypatch.setenv(RUN_TIME_ENV, "1700000000.25")  # what rank 0 broadcasts under torchrun
    cfg = composed(["name=exp1"], hydra=True)
    assert cfg.hydra.job.chdir is False
    stamp = datetime.fromtimestamp(1700000000.25).strftime("%Y-%m-%d_%H-%M-%S")
    assert cfg.hydra.run.dir == f"runs/exp1/{stamp}"
    assert cfg.hydra.sweep.dir == f"multirun/exp1/{stamp}"


def test_datasets_and_brought_tokenizer_keys_compose_from_the_command_line():
    cfg = to_typed(
        composed(
            [
                "data=parallel",
                "data.hf.path=parquet",
                "+data.hf.data_files.train=corpus/train-*.parquet",
                "+data.hf.data_files.dev=[corpus/dev-a.parquet,corpus/dev-b.parquet]",
                "data.hf.src_column=pair.de",
                "data.hf.tgt_column=pair.en",
                "data.hf.streaming=true",
                "data.train=train",
                "data.valid=dev",
                "tokenizer.joint=false",
                "tokenizer.src_model_path=de.model",
                "tokenizer.tgt_model_path=en.model",
                "model.tie_embeddings=false",
            ]
        )
    )
    hf = cfg.data.hf
    assert hf.data_files == {"train": "corpus/train-*.parquet", "dev": ["corpus/dev-a.parquet", "corpus/dev-b.parquet"]}
    assert (hf.src_column, hf.tgt_column, hf.streaming, hf.revision) == ("pair.de", "pair.en", True, None)
    assert (cfg.tokenizer.src_model_path, cfg.tokenizer.tgt_model_path) == ("de.model", "en.model")
    with pytest.raises(ConfigError, match=r"set tokenizer\.joint=false"):
        to_typed(composed(["tokenizer.src_model_path=de.model", "tokenizer.tgt_model_path=en.model"]))

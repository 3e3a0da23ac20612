"""Configuration mistakes fail when the config is built, as one line naming the key: values out of range, keys the
schemas do not define (also when appended with ``+``), Hydra's own errors; and defaults never make a valid model
fail (``model.alignment_layer`` on a 1-layer decoder)."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from nmt import config as schemas
from nmt.cli.config_errors import error_line
from nmt.cli.train import config_dir, to_typed
from nmt.config import RANGES, ConfigError, NMTConfig, Range, TransformerConfig, alignment_layer_index
from nmt.models import build_model


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=overrides)


def schema_classes() -> list[type]:
    """Every dataclass of nmt.config but Range itself."""
    return [
        c
        for c in vars(schemas).values()
        if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == schemas.__name__ and c is not Range
    ]


def numeric(hint: typing.Any) -> bool:
    """int, float, their lists and their optionals (bool is not a number here)."""
    args = typing.get_args(hint)
    if hint in (int, float):
        return True
    return bool(args) and any(a in (int, float) or numeric(a) for a in args if a is not type(None))


# --------------------------------------------------------------------------------------------- ranges
def test_every_numeric_field_of_every_schema_has_a_range():
    missing = []
    for cls in schema_classes():
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls) if numeric(hints[f.name])}
        if fields - set(RANGES.get(cls, {})):
            missing.append(f"{cls.__name__}: {sorted(fields - set(RANGES.get(cls, {})))}")
        assert set(RANGES.get(cls, {})) <= fields, f"{cls.__name__}: ranges for fields that are not numeric"
    assert not missing, missing


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.d_model=0"], "model.d_model must be >= 1, got 0"),
        (["model.dropout=1.5"], "model.dropout must be in [0, 1), got 1.5"),
        (["model.heads=0"], "model.heads must be >= 1, got 0"),  # was a ZeroDivisionError
        (["model.ffn_dim=-8"], "model.ffn_dim must be >= 1, got -8"),
        (["model.attention_dropout=-0.1"], "model.attention_dropout must be in [0, 1), got -0.1"),
        (["model.max_positions=0"], "model.max_positions must be >= 1"),
        (["model=rnn_bahdanau", "model.embed_dim=0"], "model.embed_dim must be >= 1, got 0"),
        (["model=rnn_luong", "model.dropout=1.0"], "model.dropout must be in [0, 1), got 1.0"),
        (["tokenizer.vocab_size=4"], "tokenizer.vocab_size must be >= 8, got 4"),
        (["tokenizer.character_coverage=0"], "tokenizer.character_coverage must be in (0, 1], got 0.0"),
        (["data.max_len=0"], "data.max_len must be >= 1, got 0"),
        (["train.lr=0"], "train.lr must be positive, got 0.0"),
        (["train.lr=nan"], "train.lr must be positive, got nan"),
        (["train.warmup_steps=-1"], "train.warmup_steps must be >= 0, got -1"),
        (["train.batch_tokens=0"], "train.batch_tokens must be >= 1, got 0"),
        (["train.label_smoothing=1.0"], "train.label_smoothing must be in [0, 1), got 1.0"),
        (["train.betas=[0.9,1.5]"], "train.betas[1] must be in [0, 1), got 1.5"),
        (["train.clip_norm=-1"], "train.clip_norm must be >= 0, got -1.0"),
        (["train.plateau_factor=1.5"], "train.plateau_factor must be in (0, 1), got 1.5"),
        (["train.alignment.weight=-1"], "train.alignment.weight must be >= 0, got -1.0"),
        (["search.beam_size=0"], "search.beam_size must be >= 1, got 0 (the flag --beam-size)"),
        (["search.max_len_a=-1"], "search.max_len_a must be >= 0, got -1.0 (the flag --max-len-a)"),
        (["search.sampling_temperature=0"], "search.sampling_temperature must be positive, got 0.0 (the flag --sampl"),
    ],
)
def test_a_value_out_of_range_fails_when_the_config_is_built_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as caught:
        to_typed(composed(overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_library_callers_get_the_same_checks():
    with pytest.raises(ConfigError, match=r"model\.d_model must be >= 1, got 0"):
        TransformerConfig(d_model=0)
    with pytest.raises(ConfigError, match=r"must be a number >= 1, got 'big'"):
        TransformerConfig(d_model="big")  # type: ignore[arg-type]
    assert NMTConfig()  # the defaults are in range


# --------------------------------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+train.lrr=1"], "unknown key train.lrr (did you mean train.lr?)"),
        (["+train.alignment.wieght=1"], "unknown key train.alignment.wieght (did you mean train.alignment.weight?)"),
        (["+foo=1"], "unknown key foo (NMTConfig has no such field"),
        (["model=rnn_luong", "+model.heads=4"], "model.heads is a key of model=transformer, not of this model"),
        (["+train.lrr=1", "+model.dropuot=0.2"], "unknown key model.dropuot (did you mean model.dropout?)"),
    ],
)
def test_keys_the_schemas_do_not_define_are_refused_even_when_appended_with_plus(overrides, message):
    with pytest.raises(ConfigError) as caught:
        to_typed(composed(overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_free_form_sections_and_global_presets_still_take_their_keys():
    cfg = to_typed(composed(["+data.hf.data_files.train=train.parquet", "+experiment=m30k_de_en_transformer"]))
    assert cfg.data.hf.data_files == {"train": "train.parquet"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lrr=1"], "unknown key train.lrr (did you mean train.lr?)"),
        (["model=transformr"], "Could not find 'model/transformr'; the model presets are: rnn_bahdanau, rnn_luong"),
        (["train.lr=fast"], "train.lr: Value 'fast' of type 'str' could not be converted to Float"),
        (["train.precision=fp8"], "train.precision: Invalid value 'fp8', expected one of [fp32, bf16, fp16]"),
        (["train.lr=[1"], "cannot parse an override"),
    ],
)
def test_hydra_errors_become_one_line_without_the_plus_advice(overrides, message):
    with pytest.raises(HydraException) as caught:
        composed(overrides)
    line = error_line(caught.value)
    assert message in line and "\n" not in line and "To append" not in line


# --------------------------------------------------------------------------------------------- defaults
def test_the_default_alignment_layer_is_the_last_layer_of_a_one_layer_decoder():
    cfg = to_typed(composed(["model.decoder_layers=1"]))
    assert cfg.model.alignment_layer == -2  # stored as given ...
    assert alignment_layer_index(cfg.model.alignment_layer, 1) == 0  # ... and read as the only layer
    model = build_model(cfg.model, src_vocab_size=16, tgt_vocab_size=16)
    assert model.align_layer == 0
    model.set_alignment(layer=-2)  # the flag's -2 means the same
    assert model.align_layer == 0
    assert alignment_layer_index(-2, 3) == 1  # the penultimate layer otherwise


@pytest.mark.parametrize("layer", [-3, 1, 5])
def test_an_explicit_alignment_layer_out_of_range_still_fails(layer):
    with pytest.raises(ConfigError, match=rf"model.alignment_layer {layer} is out of range: the decoder has 1 layer "):
        to_typed(composed(["model.decoder_layers=1", f"model.alignment_layer={layer}"]))

"""Typed configuration schemas, one module per section of the tree.

Every default lives in these dataclasses, in exactly one place. Hydra (only in ``nmt/cli``) composes YAML presets
from ``configs/`` on top of them; library code and tests build the same dataclasses directly. Cross-field checks
run in ``__post_init__`` so an impossible combination fails before any data loads; every numeric field has a range
(:mod:`nmt.config.ranges`), registered beside its schema.

- :mod:`~nmt.config.ranges`: ``ConfigError``, ``Range`` and ``check_ranges``
- :mod:`~nmt.config.choices`: the enums
- :mod:`~nmt.config.data`: ``data.*`` and ``tokenizer.*``;  :mod:`~nmt.config.model`: ``model.*``
- :mod:`~nmt.config.search`: ``search.*``;  :mod:`~nmt.config.train`: ``train.*``
- :mod:`~nmt.config.root`: ``NMTConfig``;  :mod:`~nmt.config.serialize`: plain dicts and back (checkpoints)
"""

from nmt.config.choices import (
    AttentionType,
    Cell,
    Device,
    EarlyStop,
    InferencePrecision,
    InitReset,
    LuongScore,
    Norm,
    Optimizer,
    PlateauMetric,
    Positions,
    Precision,
    Schedule,
    TokenizerType,
)
from nmt.config.data import (
    HF_FORMATS,
    DataConfig,
    HFConfig,
    TokenizerConfig,
)
from nmt.config.model import (
    DEFAULT_ALIGNMENT_LAYER,
    ModelConfig,
    RNNConfig,
    TransformerConfig,
    alignment_layer_index,
)
from nmt.config.ranges import (
    ANY,
    AT_LEAST_1,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    RANGES,
    ConfigError,
    Range,
    check_ranges,
)
from nmt.config.root import (
    NMTConfig,
)
from nmt.config.search import (
    SearchConfig,
)
from nmt.config.serialize import (
    config_from_dict,
    model_config_from_dict,
    to_dict,
)
from nmt.config.train import (
    AlignmentLossConfig,
    TrainConfig,
)

__all__ = [
    "ANY",
    "AT_LEAST_1",
    "DEFAULT_ALIGNMENT_LAYER",
    "HF_FORMATS",
    "NON_NEGATIVE",
    "POSITIVE",
    "PROBABILITY",
    "RANGES",
    "AlignmentLossConfig",
    "AttentionType",
    "Cell",
    "ConfigError",
    "DataConfig",
    "Device",
    "EarlyStop",
    "HFConfig",
    "InferencePrecision",
    "InitReset",
    "LuongScore",
    "ModelConfig",
    "NMTConfig",
    "Norm",
    "Optimizer",
    "PlateauMetric",
    "Positions",
    "Precision",
    "RNNConfig",
    "Range",
    "Schedule",
    "SearchConfig",
    "TokenizerConfig",
    "TokenizerType",
    "TrainConfig",
    "TransformerConfig",
    "alignment_layer_index",
    "check_ranges",
    "config_from_dict",
    "model_config_from_dict",
    "to_dict",
]

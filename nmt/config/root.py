"""The root of the configuration tree (``NMTConfig``), stored in every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nmt.config.data import DataConfig, TokenizerConfig
from nmt.config.model import RNNConfig, TransformerConfig
from nmt.config.ranges import ConfigError
from nmt.config.search import SearchConfig
from nmt.config.train import TrainConfig


@dataclass
class NMTConfig:
    """The root of ``nmt-train``'s configuration tree; stored in every checkpoint."""

    name: str = field(
        default="default",
        metadata={
            "help": "run name: runs are written to runs/<name>/<time>/ (sweeps to multirun/<name>/<time>/<job>/)"
        },
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "the corpora (data=PRESET, data.*)"})
    tokenizer: TokenizerConfig = field(
        default_factory=TokenizerConfig, metadata={"help": "the SentencePiece model (tokenizer=PRESET, tokenizer.*)"}
    )
    # RNNConfig | TransformerConfig: no common type, so Hydra gets the schema from the model group (nmt/cli/train.py)
    model: Any = field(
        default_factory=TransformerConfig,
        metadata={"help": "the network (model=transformer | rnn_bahdanau | rnn_luong | rnn_none, model.*)"},
    )
    train: TrainConfig = field(
        default_factory=TrainConfig,
        metadata={"help": "optimisation, schedule, limits, checkpoints and hardware (train=cpu | gpu, train.*)"},
    )
    search: SearchConfig = field(
        default_factory=SearchConfig,
        metadata={"help": "decoding of the final test (and nmt-translate's defaults for the checkpoint) (search.*)"},
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model, RNNConfig | TransformerConfig):
            raise ConfigError(f"model must be an RNN or Transformer config, got {type(self.model).__name__}")
        if isinstance(self.model, TransformerConfig) and self.model.tie_embeddings and not self.tokenizer.joint:
            raise ConfigError("model.tie_embeddings=true needs a joint vocabulary (tokenizer.joint=true)")
        if self.train.alignment.file and not isinstance(self.model, TransformerConfig):
            raise ConfigError("guided alignment training (train.alignment.file) needs model=transformer")
        if self.train.alignment.file and self.model.alignment_heads is None:
            self.model.alignment_heads = [0]  # Garg et al.: one supervised head; recorded for nmt-align

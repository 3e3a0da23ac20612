"""Schemas of the networks (``model.*``): the RNN encoder-decoders and the Transformer."""

from __future__ import annotations

from dataclasses import dataclass, field

from nmt.config.choices import AttentionType, Cell, LuongScore, Norm, Positions
from nmt.config.ranges import ANY, AT_LEAST_1, NON_NEGATIVE, PROBABILITY, RANGES, ConfigError, Range, check_ranges


@dataclass
class RNNConfig:
    """RNN encoder-decoder (bidirectional encoder; Bahdanau, Luong or no attention)."""

    arch: str = field(
        default="rnn",
        metadata={"help": "architecture, set by the model preset (model=rnn_bahdanau | rnn_luong | rnn_none)"},
    )
    cell: Cell = field(default=Cell.gru, metadata={"help": "recurrent cell"})
    embed_dim: int = field(default=256, metadata={"help": "source and target embedding size"})
    hidden_dim: int = field(
        default=512, metadata={"help": "decoder state size; each encoder direction gets half of it"}
    )
    encoder_layers: int = field(default=1, metadata={"help": "stacked bidirectional encoder layers"})
    decoder_layers: int = field(default=1, metadata={"help": "stacked decoder layers"})
    dropout: float = field(
        default=0.3, metadata={"help": "dropout on embeddings, between layers and on the decoder's output features"}
    )
    attention: AttentionType = field(
        default=AttentionType.bahdanau,
        metadata={"help": "bahdanau (additive), luong (global, multiplicative) or none (the encoder's summary only)"},
    )
    score: LuongScore = field(
        default=LuongScore.general, metadata={"help": "Luong's score function (attention=luong only)"}
    )
    input_feeding: bool = field(
        default=True,
        metadata={"help": "feed the previous attentional vector into the next decoder step (attention=luong only)"},
    )
    tie_embeddings: bool = field(
        default=False,
        metadata={"help": "target embedding = output projection (the output features become embed_dim-sized)"},
    )

    def __post_init__(self) -> None:
        check_ranges(self, "model")
        if self.arch != "rnn":
            raise ConfigError(f"RNNConfig.arch must be 'rnn', got {self.arch!r}")
        if self.hidden_dim % 2:
            raise ConfigError(f"model.hidden_dim must be even (split over two directions), got {self.hidden_dim}")
        if self.attention != AttentionType.luong and self.score != LuongScore.general:
            raise ConfigError("model.score applies to attention=luong only")
        if min(self.encoder_layers, self.decoder_layers) < 1:
            raise ConfigError("model.encoder_layers and model.decoder_layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TransformerConfig:
    """Transformer (Vaswani et al. 2017) on fused scaled-dot-product attention."""

    arch: str = field(
        default="transformer", metadata={"help": "architecture, set by the model preset (model=transformer)"}
    )
    d_model: int = field(default=256, metadata={"help": "model (embedding) size"})
    ffn_dim: int = field(default=1024, metadata={"help": "inner size of each feed-forward block"})
    heads: int = field(default=4, metadata={"help": "attention heads (d_model must be divisible by it)"})
    encoder_layers: int = field(default=3, metadata={"help": "encoder layers"})
    decoder_layers: int = field(default=3, metadata={"help": "decoder layers"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings and on each sub-layer's output"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    norm: Norm = field(
        default=Norm.pre,
        metadata={
            "help": "layer norm before each sub-layer (pre: stabler) or after its residual sum (post: the original)"
        },
    )
    positions: Positions = field(
        default=Positions.sinusoidal,
        metadata={"help": "sinusoidal (any length) or learned position embeddings (up to max_positions)"},
    )
    max_positions: int = field(
        default=1024, metadata={"help": "longest sequence with learned positions (sinusoids have no ceiling)"}
    )
    tie_embeddings: bool = field(
        default=True, metadata={"help": "source, target and output share one matrix (needs tokenizer.joint=true)"}
    )
    # The default -2, the penultimate layer, is the last one of a 1-layer decoder (see alignment_layer_index).
    alignment_layer: int = field(
        default=-2,
        metadata={
            "help": "decoder layer whose cross-attention is dumped, aligned and supervised (negative: from the top)"
        },
    )
    alignment_heads: list[int] | None = field(
        default=None,
        metadata={"help": "heads averaged for dumps and word alignments; null = all (with train.alignment.file: [0])"},
    )

    def __post_init__(self) -> None:
        check_ranges(self, "model")
        if self.arch != "transformer":
            raise ConfigError(f"TransformerConfig.arch must be 'transformer', got {self.arch!r}")
        if self.d_model % self.heads:
            raise ConfigError(f"model.d_model ({self.d_model}) must be divisible by model.heads ({self.heads})")
        if min(self.encoder_layers, self.decoder_layers) < 1:
            raise ConfigError("model.encoder_layers and model.decoder_layers must be >= 1")
        alignment_layer_index(self.alignment_layer, self.decoder_layers)
        for h in self.alignment_heads or []:
            if not 0 <= h < self.heads:
                raise ConfigError(f"model.alignment_heads has {h}, but there are {self.heads} heads")


ModelConfig = RNNConfig | TransformerConfig

DEFAULT_ALIGNMENT_LAYER = -2  # TransformerConfig.alignment_layer's default: the penultimate layer (as fairseq)


def alignment_layer_index(layer: int, layers: int, *, name: str = "model.alignment_layer") -> int:
    """The 0-based decoder layer that ``layer`` names among ``layers`` (negative values count from the top).

    The default, -2 (the penultimate layer), names the last layer when the decoder has only one, so that a
    default never makes a valid model fail; any other value out of range is an error.

    Raises:
        ConfigError: ``layer`` is out of range (the message starts with ``name``).
    """
    if layer == DEFAULT_ALIGNMENT_LAYER and layers == 1:
        return 0
    if not -layers <= layer < layers:
        plural = "s" if layers != 1 else ""
        raise ConfigError(
            f"{name} {layer} is out of range: the decoder has {layers} layer{plural} (0..{layers - 1}, or "
            f"-{layers}..-1 counted from the top)"
        )
    return layer % layers


RANGES[RNNConfig] = {
    "embed_dim": AT_LEAST_1,
    "hidden_dim": Range(2),
    "encoder_layers": AT_LEAST_1,
    "decoder_layers": AT_LEAST_1,
    "dropout": PROBABILITY,
}

RANGES[TransformerConfig] = {
    "d_model": AT_LEAST_1,
    "ffn_dim": AT_LEAST_1,
    "heads": AT_LEAST_1,
    "encoder_layers": AT_LEAST_1,
    "decoder_layers": AT_LEAST_1,
    "dropout": PROBABILITY,
    "attention_dropout": PROBABILITY,
    "max_positions": AT_LEAST_1,
    "alignment_layer": ANY,  # checked against decoder_layers in __post_init__
    "alignment_heads": NON_NEGATIVE,  # checked against heads in __post_init__
}

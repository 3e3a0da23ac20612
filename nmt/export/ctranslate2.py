"""Transformer checkpoint -> CTranslate2 model directory, through ``ctranslate2``'s own specs API.

The directory is all a deployment needs::

    model.bin, config.json          the CTranslate2 model (weights float32, or quantized with ``quantization``)
    shared_vocabulary.json          one vocabulary (joint SentencePiece model), or
    source_vocabulary.json, target_vocabulary.json   two (separate models); entry i is SentencePiece piece i
    source.spm, target.spm          the SentencePiece models (the same bytes twice for a joint model)
    nmt.json                        what ``nmt-translate --engine ctranslate2`` reads (see :func:`export_ctranslate2`)

Weight mapping (nmt :class:`~nmt.models.transformer.Transformer` -> ``TransformerSpec``): fused ``qkv_proj`` ->
``self_attention/linear_0`` (rows Q, K, V, as CTranslate2 splits them), ``out_proj`` -> ``linear_1``/``linear_2``;
cross-attention ``q_proj`` -> ``attention/linear_0``, fused ``kv_proj`` (rows K, V) -> ``linear_1``; ``ffn[0]``/
``ffn[2]`` -> ``ffn/linear_0``/``linear_1``; encoder ``norm1``/``norm2`` and decoder ``norms[0..2]`` -> the layer
norm of the sublayer they belong to (CTranslate2 applies it before the sublayer in pre-norm, after the residual in
post-norm, as nmt does); ``encoder_norm``/``decoder_norm`` -> the final layer norms (pre-norm only). Embeddings are
scaled by sqrt(d_model) in both. Tied matrices are saved once (CTranslate2 aliases equal variables).

Decoding conventions carried by the export, so that plain ``ctranslate2.Translator`` users get nmt's behaviour:

- The source gets EOS appended and no BOS (``add_source_eos``); the decoder starts from BOS
  (``decoder_start_token``). LayerNorm epsilon is nmt's (1e-5).
- PAD and BOS are never emitted: the output projection gets a bias of :data:`FORBIDDEN_LOGIT` at those two ids
  (nmt's search sets their log-probabilities to -inf). Both remove the two tokens from the choice; CTranslate2's
  log-probabilities are renormalised over the other tokens (a shift of log(1 - p(PAD) - p(BOS)), about 0 for a
  trained model).
- Positions: CTranslate2's built-in sinusoids are not nmt's (it uses positions 1.. and frequencies
  10000^(-i/(d/2-1)); nmt positions 0.. and 10000^(-i/(d/2))), so the exact table is exported as a position
  table of ``max_positions`` rows; a learned table is exported as it is. Sources longer than the table minus one
  (for EOS) and outputs longer than the table cannot be translated: :func:`default_positions` sizes it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from nmt.checkpoint import checkpoint_config, load_checkpoint, model_from_state
from nmt.config import NMTConfig, Positions, TransformerConfig, to_dict
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, NMTError
from nmt.export import QUANTIZATIONS
from nmt.models.transformer import Transformer, sinusoids
from nmt.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

FORMAT = "nmt-ctranslate2-1"  # the "format" entry of nmt.json
META_FILE = "nmt.json"
SOURCE_SPM, TARGET_SPM = "source.spm", "target.spm"
FORBIDDEN_LOGIT = -1e4  # bias of PAD and BOS: finite in float16 too, far below any real logit
MIN_SINUSOID_POSITIONS = 1024  # default table size for sinusoidal models (about 1 MiB at d_model 256)
INSTALL_HINT = "pip install -e '.[ctranslate2]' in the nmt checkout (or pip install 'ctranslate2>=4.5')"


def require_ctranslate2() -> ModuleType:
    """Import ``ctranslate2``, or raise a user error naming the extra to install."""
    try:
        import ctranslate2
    except ImportError:
        raise NMTError(f"the CTranslate2 export and engine need the ctranslate2 package: {INSTALL_HINT}") from None
    return ctranslate2


def positions_needed(cfg: NMTConfig) -> int:
    """Position rows the checkpoint's own settings use: the longest source + EOS, and the longest output + EOS
    (``floor(max_len_a * data.max_len) + max_len_b`` pieces, then EOS)."""
    max_src = cfg.data.max_len
    max_out = math.floor(cfg.search.max_len_a * max_src) + cfg.search.max_len_b
    return max(max_src + 1, max_out + 1)


def default_positions(cfg: NMTConfig) -> int:
    """Rows of the exported position table: a learned model's own table; for sinusoids the larger of 1,024 and
    :func:`positions_needed` (more rows only cost disk and memory, d_model floats each)."""
    if cfg.model.positions == Positions.learned:
        return cfg.model.max_positions
    return max(MIN_SINUSOID_POSITIONS, positions_needed(cfg))


def export_ctranslate2(
    checkpoint: str | Path,
    output: str | Path,
    *,
    quantization: str | None = None,
    max_positions: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Convert a Transformer checkpoint into a CTranslate2 model directory (see the module docstring).

    Args:
        checkpoint: an nmt checkpoint (``.pt``).
        output: the directory to create; it is written beside under a temporary name and renamed at the end.
        quantization: CTranslate2 weight type (``int8``, ``int8_float16``, ``int16``, ``float16``, ...);
            None keeps float32. ``ctranslate2.Translator(compute_type="default")`` then runs in this type.
        max_positions: rows of the position table (default :func:`default_positions`).
        force: replace ``output`` when it exists and is not empty.
    Returns:
        the contents of ``nmt.json``.
    Raises:
        NMTError: ctranslate2 is not installed, ``output`` exists (without ``force``), a bad option.
        CheckpointError: an unreadable checkpoint, or an RNN model (CTranslate2 has no such architecture).
    """
    ct2 = require_ctranslate2()
    out = Path(output)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise NMTError(f"{out} exists and is not an empty directory; pass --force to replace it")
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise NMTError(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
    state = load_checkpoint(checkpoint)
    if not isinstance(checkpoint_config(state).model, TransformerConfig):
        raise CheckpointError(
            f"{checkpoint} is an RNN model (model.arch=rnn): CTranslate2 has no RNN encoder-decoder architecture, "
            "only Transformer checkpoints can be exported"
        )
    model, tokenizer, cfg = model_from_state(state, checkpoint)
    positions = _check_positions(cfg, max_positions)
    spec = build_spec(ct2, model, tokenizer, positions)
    spec.validate()
    spec.optimize(quantization=quantization)

    meta = {
        "format": FORMAT,
        "nmt_version": _nmt_version(),
        "ctranslate2_version": ct2.__version__,
        "checkpoint": str(Path(checkpoint).resolve()),
        "step": int(state["step"]),
        "src_lang": cfg.data.src_lang,
        "tgt_lang": cfg.data.tgt_lang,
        "max_source_len": cfg.data.max_len,
        "max_positions": positions,
        "quantization": quantization or "float32",
        "joint_vocabulary": tokenizer.joint,
        "search": to_dict(cfg.search),
        "model": to_dict(cfg.model),
    }
    _write_directory(out, spec, tokenizer, meta)
    return meta


def build_spec(ct2: ModuleType, model: Transformer, tokenizer: Tokenizer, positions: int) -> Any:
    """A filled ``ctranslate2.specs.TransformerSpec`` for ``model`` (float32 numpy weights, not yet validated).

    Args:
        ct2: the ``ctranslate2`` module.
        model: the nmt Transformer, on the CPU.
        tokenizer: its SentencePiece model(s): piece i is vocabulary entry i.
        positions: rows of the exported position tables.
    """
    from ctranslate2.specs import common_spec, transformer_spec

    cfg = model.cfg
    pre = model.encoder_layers[0].pre
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers),
        cfg.heads,
        pre_norm=pre,
        activation=common_spec.Activation.RELU,
    )
    enc, dec = spec.encoder, spec.decoder
    table = None if model.learned else _numpy(_sinusoid_table(positions, cfg.d_model))
    enc.embeddings[0].weight = _numpy(model.src_embed.weight)
    dec.embeddings.weight = _numpy(model.tgt_embed.weight)
    enc.scale_embeddings = dec.scale_embeddings = True  # x sqrt(d_model), like nmt
    enc.position_encodings.encodings = table if table is not None else _numpy(model.src_pos.weight[:positions])
    dec.position_encodings.encodings = table if table is not None else _numpy(model.tgt_pos.weight[:positions])
    for layer_spec, layer in zip(enc.layer, model.encoder_layers):
        _attention(layer_spec.self_attention, layer.self_attn, layer.norm1)
        _ffn(layer_spec.ffn, layer.ffn, layer.norm2)
    for layer_spec, layer in zip(dec.layer, model.decoder_layers):
        _attention(layer_spec.self_attention, layer.self_attn, layer.norms[0])
        _attention(layer_spec.attention, layer.cross_attn, layer.norms[1])
        _ffn(layer_spec.ffn, layer.ffn, layer.norms[2])
    if pre:
        _norm(enc.layer_norm, model.encoder_norm)
        _norm(dec.layer_norm, model.decoder_norm)
    out_weight = model.tgt_embed.weight if model.out_proj is None else model.out_proj.weight
    dec.projection.weight = _numpy(out_weight)
    bias = np.zeros(out_weight.size(0), dtype=np.float32)
    bias[[PAD_ID, BOS_ID]] = FORBIDDEN_LOGIT
    dec.projection.bias = bias

    src_vocab = [tokenizer.src_pieces([i])[0] for i in range(tokenizer.src_vocab_size)]
    tgt_vocab = [tokenizer.tgt_pieces([i])[0] for i in range(tokenizer.tgt_vocab_size)]
    for vocab in (src_vocab, tgt_vocab):
        if len(set(vocab)) != len(vocab):  # CTranslate2 looks tokens up by string
            raise CheckpointError("the SentencePiece model has duplicate pieces; CTranslate2 cannot map them to ids")
    spec.register_source_vocabulary(src_vocab)
    spec.register_target_vocabulary(tgt_vocab)
    config = spec.config
    config.unk_token, config.bos_token, config.eos_token = tgt_vocab[UNK_ID], tgt_vocab[BOS_ID], tgt_vocab[EOS_ID]
    config.decoder_start_token = tgt_vocab[BOS_ID]
    config.add_source_bos, config.add_source_eos = False, True
    config.layer_norm_epsilon = float(model.encoder_layers[0].norm1.eps)
    if src_vocab[BOS_ID] != config.bos_token or src_vocab[EOS_ID] != config.eos_token:
        raise CheckpointError("the source and target SentencePiece models name BOS/EOS differently")
    return spec


# --------------------------------------------------------------------------------------------- helpers
def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def _sinusoid_table(positions: int, dim: int) -> torch.Tensor:

    return sinusoids(torch.arange(positions), dim)


def _linear(spec: Any, linear: torch.nn.Linear) -> None:
    spec.weight = _numpy(linear.weight)
    if linear.bias is not None:
        spec.bias = _numpy(linear.bias)


def _norm(spec: Any, norm: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _numpy(norm.weight), _numpy(norm.bias)


def _attention(spec: Any, attn: Any, norm: torch.nn.LayerNorm) -> None:
    """Self-attention: [fused QKV, out]; cross-attention: [Q, fused KV, out] (CTranslate2's ``linear`` list)."""
    projections = [attn.q_proj, attn.kv_proj] if attn.cross else [attn.qkv_proj]
    for linear_spec, linear in zip(spec.linear, [*projections, attn.out_proj]):
        _linear(linear_spec, linear)
    _norm(spec.layer_norm, norm)


def _ffn(spec: Any, ffn: torch.nn.Sequential, norm: torch.nn.LayerNorm) -> None:
    _linear(spec.linear_0, ffn[0])
    _linear(spec.linear_1, ffn[2])
    _norm(spec.layer_norm, norm)


def _check_positions(cfg: NMTConfig, requested: int | None) -> int:
    positions = requested if requested is not None else default_positions(cfg)
    if positions < 2:
        raise NMTError(f"--max-positions must be at least 2, got {positions}")
    if cfg.model.positions == Positions.learned and positions > cfg.model.max_positions:
        raise NMTError(
            f"--max-positions {positions} is more than the model's learned table (model.max_positions="
            f"{cfg.model.max_positions})"
        )
    needed = positions_needed(cfg)
    if positions < needed:
        log.warning(
            "a position table of %d rows is shorter than the %d the checkpoint's settings use (data.max_len %d, "
            "output cap %s * source + %d): longer sources are truncated and outputs capped at translation",
            positions,
            needed,
            cfg.data.max_len,
            cfg.search.max_len_a,
            cfg.search.max_len_b,
        )
    return positions


def _nmt_version() -> str:
    from nmt import __version__

    return __version__


def _write_directory(out: Path, spec: Any, tokenizer: Tokenizer, meta: dict[str, Any]) -> None:
    """Write everything into a temporary sibling directory, then rename it to ``out`` (replacing an old one)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        spec.save(str(tmp))
        state = tokenizer.to_state()
        src, tgt = (state["joint"], state["joint"]) if tokenizer.joint else (state["src"], state["tgt"])
        (tmp / SOURCE_SPM).write_bytes(src)
        (tmp / TARGET_SPM).write_bytes(tgt)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp creates it private; the export is a normal directory
        if out.is_dir() and any(out.iterdir()):
            shutil.rmtree(out)  # only with force (checked by the caller)
        elif out.exists() and not out.is_dir():
            out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

"""Decoding-only number formats of a model: bf16 weights, and int8 dynamic quantisation of the linear layers.

- ``bf16``: a copy of the model with every parameter and buffer cast to bfloat16, so each matrix product reads
  bf16 weights directly. Autocast would instead cast every weight at every call (at decoding's small batches
  those casts cost about as much as the products). Search still gets float32 log-probabilities. Fast where the CPU
  has bf16 units (AVX512-BF16, AMX) or on a GPU; elsewhere emulated and slow, with a warning.
- ``int8``: torch's dynamic quantisation (:func:`torch.ao.quantization.quantize_dynamic`): linear-layer weights in
  int8, one scale per output channel; activations are quantised on the fly at each call, everything else
  (attention, layer norms, the caches) stays float32. CPU only. A Transformer gets every linear layer quantised,
  the output projection included (a tied embedding is first copied into a layer of its own: the embedding itself
  stays float32). An RNN gets its output projection quantised (its decoder loop reads the other weights directly).
- ``fp16`` and ``fp32``: the model as it is (fp16 runs under autocast, see :func:`nmt.search.autocast`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from nmt.config import ConfigError, InferencePrecision, Precision
from nmt.models.base import Seq2Seq
from nmt.models.ensemble import Ensemble
from nmt.models.rnn import RNNSeq2Seq
from nmt.models.transformer import Transformer

log = logging.getLogger(__name__)


def autocast_precision(precision: InferencePrecision) -> Precision:
    """The autocast format search runs a prepared model under: fp16 only (bf16 and int8 are in the weights)."""
    return Precision.fp16 if InferencePrecision(precision) == InferencePrecision.fp16 else Precision.fp32


def prepare_for_inference(model: Seq2Seq, precision: InferencePrecision, device: torch.device | str) -> Seq2Seq:
    """The model in the decoding format ``precision``: the model itself when nothing changes, else a new one.

    Raises:
        ConfigError: int8 on a device other than the CPU.
    """
    precision, device = InferencePrecision(precision), torch.device(device)
    if precision == InferencePrecision.bf16:
        if device.type == "cpu" and not _cpu_has_bf16():
            log.warning("--precision bf16: this CPU has no bf16 units (AVX512-BF16/AMX): decoding will be slow")
        if all(p.dtype == torch.bfloat16 for p in model.parameters()):
            return model
        return copy.deepcopy(model).to(torch.bfloat16)
    if precision == InferencePrecision.int8:
        if device.type != "cpu":
            raise ConfigError(f"--precision int8 runs on the CPU only (device {device}); use bf16 or fp16 on a GPU")
        if any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules()):
            return model  # quantised already
        return quantize_int8(model)
    return model


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def quantize_int8(model: Seq2Seq) -> Seq2Seq:
    """A copy of ``model`` with int8 dynamically quantised linear layers (see the module docstring)."""
    model = copy.deepcopy(model).float().eval()
    members = model.members if isinstance(model, Ensemble) else [model]
    names: set[str] = set()
    for i, member in enumerate(members):
        prefix = f"members.{i}." if isinstance(model, Ensemble) else ""
        if isinstance(member, Transformer):
            if member.out_proj is None:  # tied: the output projection gets its own copy of the embedding
                vocab, d = member.tgt_embed.weight.shape
                member.out_proj = nn.Linear(d, vocab, bias=False)
                member.out_proj.weight = nn.Parameter(member.tgt_embed.weight.detach().clone())
            names |= {prefix + name for name, m in member.named_modules() if isinstance(m, nn.Linear)}
        elif isinstance(member, RNNSeq2Seq):
            names.add(prefix + "out_proj")
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with _quantization_engine(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization points to torchao; still works
        warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
        return torch.ao.quantization.quantize_dynamic(model, dict.fromkeys(names, qconfig), dtype=torch.qint8)


@contextlib.contextmanager
def _quantization_engine() -> Iterator[None]:
    """Pack the int8 weights for oneDNN where it is available (it uses the CPU's VNNI/AMX int8 units)."""
    before = torch.backends.quantized.engine
    if "onednn" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "onednn"
    try:
        yield
    finally:
        torch.backends.quantized.engine = before

"""``nmt-train``: the Hydra application that trains a model.

    nmt-train                                        # Transformer on Multi30k de->en (configs/train.yaml)
    nmt-train model=rnn_bahdanau train.max_steps=5000
    nmt-train hydra.run.dir=runs/x                   # run again with the same directory to resume
    nmt-train -m model=transformer,rnn_luong train.lr=5e-4,1e-3    # a sweep (returns dev BLEU per job)
    torchrun --nproc_per_node=2 -m nmt.cli.train train.device=cpu  # data-parallel (gloo on CPU, NCCL on GPU)

Hydra composes ``configs/train.yaml`` over the schemas registered here; the composed config is converted to the
typed :class:`nmt.config.NMTConfig` at once and handed to :func:`nmt.training.trainer.train`. Only this package
imports Hydra.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf

from nmt.config import (
    DataConfig,
    NMTConfig,
    RNNConfig,
    SearchConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
)
from nmt.errors import NMTError
from nmt.training import distributed

log = logging.getLogger("nmt.cli.train")

RUN_TIME_ENV = "NMT_RUN_TIME"  # rank 0's start time under torchrun, so every rank names the same run directory


def config_dir() -> str:
    """``configs/`` of the source tree (editable installs), else the copy shipped inside the package."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "configs", here.parents[1] / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    return str(here.parents[2] / "configs")


def register_configs() -> None:
    """Put the dataclass schemas in Hydra's ConfigStore; YAML presets extend them through ``defaults:``."""
    cs = ConfigStore.instance()
    root = OmegaConf.structured(NMTConfig)
    root.model = MISSING  # the model group fills it with an RNN or a Transformer schema (no common type)
    cs.store(name="nmt_schema", node=root)
    cs.store(group="data", name="data_schema", node=DataConfig)
    cs.store(group="tokenizer", name="tokenizer_schema", node=TokenizerConfig)
    cs.store(group="model", name="rnn_schema", node=RNNConfig)
    cs.store(group="model", name="transformer_schema", node=TransformerConfig)
    cs.store(group="train", name="train_schema", node=TrainConfig)
    cs.store(group="search", name="search_schema", node=SearchConfig)


def _run_time(fmt: str) -> str:
    """``${nmt_now:FORMAT}``: like Hydra's ``${now:}``, but the same instant on every torchrun rank."""
    stamp = os.environ.get(RUN_TIME_ENV)
    return (datetime.fromtimestamp(float(stamp)) if stamp else datetime.now()).strftime(fmt)


if not OmegaConf.has_resolver("nmt_now"):
    OmegaConf.register_new_resolver("nmt_now", _run_time, use_cache=True)
register_configs()


def to_typed(cfg: DictConfig) -> NMTConfig:
    """The composed DictConfig as the typed config tree (runs every cross-field check)."""
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, NMTConfig)
    return typed


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def run(cfg: DictConfig) -> float:
    """The Hydra task: train and return the best dev BLEU (what sweepers optimise)."""
    info = distributed.init()
    if not info.is_main:
        _quiet_rank()
    try:
        typed = to_typed(cfg)
        from nmt.training.trainer import train

        run_dir = Path(HydraConfig.get().runtime.output_dir)
        return train(typed, run_dir)
    except NMTError as e:
        code = getattr(e, "exit_code", 1)
        _log_to_files(logging.WARNING if code > 128 else logging.ERROR, str(e))
        print(f"nmt-train: {'' if code > 128 else 'error: '}{e}", file=sys.stderr)
        sys.exit(code)


def _log_to_files(level: int, message: str) -> None:
    """Record a user-facing error in train.log without printing it twice on the console."""
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _quiet_rank() -> None:
    """Ranks other than 0 write no log file and print only warnings (rank 0 speaks for the job)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)


def main() -> None:
    """Console entry point ``nmt-train``."""
    if distributed.launched_by_torchrun():
        distributed.init()
        os.environ[RUN_TIME_ENV] = repr(distributed.shared_start_time())
    try:
        run()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()

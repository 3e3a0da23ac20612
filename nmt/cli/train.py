"""``nmt-train``: the Hydra application that trains a model.

    nmt-train                                        # Transformer on Multi30k de->en (configs/train.yaml)
    nmt-train model=rnn_bahdanau train.max_steps=5000
    nmt-train hydra.run.dir=runs/x                   # run again with the same directory to resume
    nmt-train -m model=transformer,rnn_luong train.lr=5e-4,1e-3    # a sweep (returns dev BLEU per job)
    nmt-train -m +sweep=cpu_parallel model=transformer,rnn_luong   # 2 jobs at a time (configs/sweep/)
    torchrun --nproc_per_node=2 -m nmt.cli.train train.device=cpu  # data-parallel (gloo on CPU, NCCL on GPU)
    nmt-train --help                                 # every option, preset and example (nmt.cli.train_help)

Hydra composes ``configs/train.yaml`` over the schemas registered here; the composed config is converted to the
typed :class:`nmt.config.NMTConfig` at once and handed to :func:`nmt.training.trainer.train`. Only this package
imports Hydra.

Exit status, as for every nmt tool (``nmt.cli.common.EXIT_STATUS_HELP``): 0 success; 1 an internal error (a bug,
with its traceback); 2 a user error, printed as one line ``nmt-train: error: ...`` (a misspelt or unknown key, also
one appended with ``+``, with close matches; a value out of range; a missing preset; a missing, empty or broken
corpus; an unusable checkpoint to resume); 128 + N stopped by signal N after saving a checkpoint (130 Ctrl-C, 143
SIGTERM). Configuration mistakes are found before any data is read. In a sweep a failing job is recorded and the
others go on (see below); the sweep itself exits 0 unless it could not start.

In a sweep (``-m``) each job is isolated: a job whose directory already holds a complete ``results.json`` is not
trained again (its dev BLEU is returned), an unfinished one resumes from its ``last.pt``, and a job that raises is
recorded in ``failed.json`` (error and traceback) and returns :data:`FAILED_JOB_VALUE` so the other jobs go on.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nmt import __version__
from nmt.cli.config_errors import check_known_keys, error_line, is_config_error
from nmt.config import (
    ConfigError,
    DataConfig,
    NMTConfig,
    RNNConfig,
    SearchConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
)
from nmt.errors import EXIT_USER_ERROR, NMTError
from nmt.experiments import jobs
from nmt.training import distributed
from nmt.training.rundir import RunDirError, RunDirLock, check_writable

log = logging.getLogger("nmt.cli.train")

RUN_TIME_ENV = "NMT_RUN_TIME"  # rank 0's start time under torchrun, so every rank names the same run directory

# What a failed sweep job returns. Hydra's Optuna sweeper rejects NaN (the trial is marked failed and, with its
# default max_failure_rate of 0, the whole study stops) but records -inf as a completed trial worse than any
# other when maximising, which TPE handles (it only ranks values). The basic and joblib sweeps ignore the value.
FAILED_JOB_VALUE = -math.inf


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
    """The composed DictConfig as the typed config tree: every key known to its schema (also those appended with
    ``+``), every value in range, every cross-field check passed.

    Raises:
        ConfigError: one line naming the key (close matches for an unknown one).
    """
    try:
        check_known_keys(cfg)
        typed = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:  # a missing value, a broken interpolation
        raise ConfigError(error_line(e)) from None
    if not isinstance(typed, NMTConfig):
        raise ConfigError(f"the composed config is a {type(typed).__name__}, not nmt's schema (configs/train.yaml)")
    return typed


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def run(cfg: DictConfig) -> float:
    """The Hydra task: train and return the best dev BLEU (what sweepers optimise)."""
    info = distributed.init()
    if not info.is_main:
        _quiet_rank()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        num = hydra_cfg.job.get("num")
        return sweep_job(
            lambda: _train(cfg, run_dir),
            run_dir,
            overrides=list(hydra_cfg.overrides.task),
            num=int(num) if num is not None else None,
            limits=_limits(cfg),
            is_main=info.is_main,
        )
    if info.is_main:
        jobs.clear_failure(run_dir)  # a resumed run is no longer the interrupted one
    try:
        return _train(cfg, run_dir)
    except NMTError as e:
        if info.is_main and _signal_code(e):
            overrides = list(hydra_cfg.overrides.task)
            jobs.write_interruption(run_dir, message=str(e), exit_code=_signal_code(e), overrides=overrides)
        _exit_with(e)


def _train(cfg: DictConfig, run_dir: Path) -> float:
    typed = to_typed(cfg)
    if typed.train.init_from:
        typed = fine_tuning_config(typed, run_dir, list(HydraConfig.get().overrides.task))
    from nmt.training.trainer import train

    try:
        return train(typed, run_dir)
    except OSError as e:  # a full disk wherever it strikes (logs, metrics, hypotheses): one line, not a traceback
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = e.filename or f"into {run_dir}"
        raise NMTError(f"cannot write {where}: the disk is full ({e.strerror}); free some space") from None


def fine_tuning_config(cfg: NMTConfig, run_dir: Path, overrides: list[str]) -> NMTConfig:
    """``train.init_from``: the model and tokenizer sections become the checkpoint's (those of the run's own
    checkpoint when it resumes), except keys set on the command line, which must not contradict them
    (:func:`nmt.training.finetune.adopt`). A ``model=`` / ``tokenizer=`` preset names the architecture (and an
    RNN's attention) / the tokenizer type."""
    from nmt.checkpoint import load_checkpoint
    from nmt.config import RNNConfig
    from nmt.training import finetune, session

    keep: set[str] = set()
    for override in overrides:
        key = jobs.override_key(override).strip()
        if key == "model":
            keep |= {"model.arch", "model.attention"} if isinstance(cfg.model, RNNConfig) else {"model.arch"}
        elif key == "tokenizer":
            keep.add("tokenizer.type")
        elif key.startswith(("model.", "tokenizer.")):
            keep.add(key)
    source = session.resume_path(cfg.train, run_dir) or Path(str(cfg.train.init_from)).expanduser()
    return finetune.adopt(cfg, load_checkpoint(source)["config"], keep=keep, path=source)


def _limits(cfg: DictConfig) -> dict[str, int]:
    """The training limits of the composed config, read without building the typed tree (which may fail: that
    is then the job's failure, reported by :func:`sweep_job`)."""
    train = cfg.get("train") or {}
    return {
        "max_steps": int(train.get("max_steps", 0)),
        "max_epochs": int(train.get("max_epochs", 0)),
        "patience": int(train.get("patience", 0)),
    }


def sweep_job(
    body: Callable[[], float],
    run_dir: Path,
    *,
    overrides: list[str],
    num: int | None,
    limits: dict[str, int],
    is_main: bool = True,
) -> float:
    """One job of a sweep: skip it when finished, else run ``body``; a failure is recorded, not raised.

    Returns:
        ``body``'s value (the best dev BLEU), the recorded dev BLEU of a finished job, or
        :data:`FAILED_JOB_VALUE` when the job failed (``failed.json`` in ``run_dir`` holds the error).
    """
    previous = jobs.read_json(run_dir / jobs.JOB_RECORD)
    if previous is not None and isinstance(previous.get("overrides"), list):
        changed = jobs.changed_overrides([str(o) for o in previous["overrides"]], overrides)
        if changed:  # the directory belongs to another sweep: leave its files alone
            log.error(
                "job %s not run: %s holds job %s of a different sweep (%s). Rerun a sweep into its own directory "
                "with the same overrides, or give this one a new hydra.sweep.dir",
                num, run_dir, previous.get("num"), "; ".join(changed),
            )  # fmt: skip
            return FAILED_JOB_VALUE
    try:
        results = jobs.read_results(run_dir)
        if results is not None and jobs.training_ended(results, **limits):
            value = jobs.dev_bleu(results)
            log.info(
                "job %s already finished (%s at step %s, best dev BLEU %.2f): not retrained; %s",
                num, results.get("finished") or "done", results.get("steps"), value, run_dir / jobs.RESULTS,
            )  # fmt: skip
            return value
        with RunDirLock(run_dir, is_main=is_main):  # before writing anything: it may be another sweep's job
            if is_main:
                jobs.clear_failure(run_dir)
                jobs.write_job_record(run_dir, num=num, overrides=overrides)
            return body()
    except RunDirError as e:  # in use by another process (a second copy of the sweep): leave its files alone
        log.error("job %s not run: %s", num, e)
        return FAILED_JOB_VALUE
    except Exception as e:
        if _signal_code(e):  # SIGINT/SIGTERM: stop the whole sweep (rerun it to resume)
            if is_main:
                jobs.write_interruption(run_dir, message=str(e), exit_code=_signal_code(e), overrides=overrides)
            _exit_with(e)
        if is_main:
            path = jobs.write_failure(run_dir, e, overrides=overrides)
            if isinstance(e, NMTError):
                log.error("job %s failed: %s (recorded in %s); the sweep goes on", num, e, path)
            else:
                log.exception("job %s failed with an unexpected error (recorded in %s); the sweep goes on", num, path)
        return FAILED_JOB_VALUE


class RunDirCallback(Callback):
    """Checks and claims the run directory before Hydra writes into it (``.hydra/``, ``train.log``).

    Registered in ``configs/train.yaml`` (``hydra.callbacks``). A directory that cannot be written, or that another
    ``nmt-train`` trains in, ends with one line and exit status 2, instead of Hydra's traceback or a second writer
    in the directory of a training in progress (see :mod:`nmt.training.rundir`). Sweep jobs are claimed one by one
    in :func:`sweep_job`; here only the sweep directory is checked.
    """

    def __init__(self) -> None:
        self.lock: RunDirLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        try:
            self.lock = RunDirLock(run_dir, is_main=distributed.init().is_main).acquire()
        except RunDirError as e:
            _exit_with(e)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_writable(Path(str(OmegaConf.select(config, "hydra.sweep.dir"))), "sweep directory", "hydra.sweep.dir")
        except RunDirError as e:
            _exit_with(e)


def _signal_code(e: Exception) -> int:
    """The exit status of an error that stands for SIGINT/SIGTERM (128 + signal number), else 0."""
    code = getattr(e, "exit_code", 0)
    return code if isinstance(code, int) and code > 128 else 0


def _exit_with(e: Exception) -> NoReturn:
    """A user-facing error: its message without a traceback, in train.log too, and the error's exit status (2, or
    128 + N for a signal)."""
    code = getattr(e, "exit_code", EXIT_USER_ERROR)
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
    if "--version" in sys.argv[1:]:  # before Hydra, whose own --version names Hydra's
        print(f"nmt-train (nmt) {__version__}")
        return
    if {"--help", "-h"} & set(sys.argv[1:]):  # before Hydra, whose own page is --hydra-help
        from nmt.cli.train_help import render

        try:
            sys.stdout.write(render(config_dir()))
            sys.stdout.flush()
        except BrokenPipeError:  # nmt-train --help | head
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if distributed.launched_by_torchrun():
        distributed.init()
        os.environ[RUN_TIME_ENV] = repr(distributed.shared_start_time())
    # Hydra prints its own errors (a misspelt key, a bad value, a missing preset) over several lines and exits 1,
    # like a crash. With HYDRA_FULL_ERROR it raises them instead, and they are reported here as one line with
    # exit status 2; anything else is a bug and keeps its traceback. A user who set HYDRA_FULL_ERROR gets Hydra's.
    user_full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        run()
    except Exception as e:
        if user_full_error or not is_config_error(e):
            raise
        print(f"nmt-train: error: {error_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    finally:
        if user_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        distributed.shutdown()


if __name__ == "__main__":
    main()

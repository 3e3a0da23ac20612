"""A run's beginning and end, around the loop of :mod:`nmt.training.trainer`: resuming, data and batches under
DDP, the checkpoint files of the run directory, and the final report on the dev and test sets (``results.json``).

Plain functions of explicit arguments: nothing here needs the trainer itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from nmt.checkpoint import link_checkpoint, load_checkpoint, save_checkpoint
from nmt.config import NMTConfig, TrainConfig, to_dict
from nmt.data.batching import TokenBatchSampler, TrainLoader
from nmt.data.prepare import PreparedData
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, NMTError
from nmt.models.base import Seq2Seq
from nmt.report import SetReport, TestSet, report_set, results_document, write_json
from nmt.training import distributed
from nmt.training.metrics import flops_per_token
from nmt.training.state import TrainerState, capture_rng, restore_rng
from nmt.translate import Translator

log = logging.getLogger("nmt.training.trainer")

RESUME_KEYS = ("optimizer", "scheduler", "rng", "loader", "trainer")


def resume_path(tc: TrainConfig, run_dir: Path) -> Path | None:
    """``train.resume``, else the newest of the run's ``last.pt`` and ``step_N.pt`` files (a kill between writing
    ``step_N.pt`` and linking it as ``last.pt`` must not lose that step)."""
    if tc.resume:
        return Path(tc.resume).expanduser()
    directory = run_dir / "checkpoints"
    candidates = [p for p in [directory / "last.pt", *directory.glob("step_*.pt")] if p.is_file()]
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.pt"), default=None)


def load_resume(path: Path, cfg: NMTConfig, world_size: int) -> dict[str, Any]:
    """Read a checkpoint to resume from, refusing one that cannot continue this run."""
    state = load_checkpoint(path)
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} cannot be resumed: it lacks {', '.join(missing)} (best.pt and averaged checkpoints hold "
            "weights only; resume from last.pt or a step_N.pt)"
        )
    old, new = state["config"], to_dict(cfg)
    if old["model"] != new["model"]:
        diff = {k: (old["model"].get(k), v) for k, v in new["model"].items() if old["model"].get(k) != v}
        raise CheckpointError(
            f"{path} holds a different model than the config asks for (checkpoint vs config: {diff}); "
            "use the checkpoint's model settings or start a new run directory"
        )
    if int(state["trainer"].get("world_size", 1)) != world_size:
        raise CheckpointError(
            f"{path} was written by {state['trainer']['world_size']} process(es) but this run has {world_size}: "
            "resume with the same number of processes (torchrun --nproc_per_node) so every rank finds its data "
            "position"
        )
    for section in ("data", "tokenizer", "train", "search"):
        for key, value in new[section].items():
            if old.get(section, {}).get(key) != value:
                log.info("resume: %s.%s changed from %r to %r", section, key, old.get(section, {}).get(key), value)
    return state


def prepare(cfg: NMTConfig, info: distributed.DistInfo, resumed: dict[str, Any] | None) -> PreparedData:
    """Tokenizer and data; under DDP rank 0 builds the caches first, the others then read them."""
    from nmt.data.prepare import prepare_data
    from nmt.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_state(resumed["tokenizer"]) if resumed else None
    if not info.enabled:
        return prepare_data(cfg.data, cfg.tokenizer, tokenizer=tokenizer)
    data, error = None, None
    if info.is_main:
        try:
            data = prepare_data(cfg.data, cfg.tokenizer, tokenizer=tokenizer)
        except NMTError as e:
            error = e
    message = distributed.broadcast_object(str(error) if error else None)
    if error:
        raise error
    if message:
        raise NMTError(message)
    return data or prepare_data(cfg.data, cfg.tokenizer, tokenizer=tokenizer)


def config_markdown(cfg: NMTConfig) -> str:
    """The config as an indented code block (TensorBoard renders text as Markdown)."""
    return "\n".join("    " + line for line in json.dumps(to_dict(cfg), indent=2).splitlines())


def make_loader(data: Any, tc: TrainConfig, info: distributed.DistInfo, device: torch.device) -> TrainLoader:
    """Token-bucketed batches of this rank's shard, built ahead on a background thread."""
    sampler = TokenBatchSampler(
        data.src_lengths,
        data.tgt_lengths,
        batch_tokens=tc.batch_tokens,
        seed=tc.seed,
        rank=info.rank,
        world_size=info.world_size,
    )
    pin = device.type == "cuda"  # page-locked batches copy to the GPU asynchronously (non_blocking)
    return TrainLoader(data, sampler, max_epochs=tc.max_epochs, pin_memory=pin, num_workers=tc.num_workers)


def count_flops(model: Seq2Seq, data: Any, loader: TrainLoader, device: torch.device) -> float:
    """FLOPs per target token of the model on the first training batch (RNG left untouched)."""
    rng = capture_rng()
    indices = loader.sampler.epoch_batches(1)[0]
    model.train()
    flops = flops_per_token(model, data.batch(indices).to(device))
    restore_rng(rng)
    return flops


# ------------------------------------------------------------------------------------------------ files
def rotate(saved_steps: list[int], step: int, keep_last: int) -> list[int]:
    """Record a ``step_N.pt`` of ``step`` in ``saved_steps`` (in place) and return the steps whose files go
    (the oldest beyond ``keep_last``). Every rank calls it, so the list in every checkpoint agrees."""
    drop: list[int] = []
    if step not in saved_steps:
        saved_steps.append(step)
        while len(saved_steps) > keep_last:
            drop.append(saved_steps.pop(0))
    return drop


def write_checkpoint(directory: Path, ckpt: dict[str, Any], *, step: int | None, drop: list[int]) -> Path:
    """``last.pt``, or ``step_N.pt`` (``step`` given) made ``last.pt`` by a link; then the dropped step files go.

    Returns:
        The file written.
    """
    last = directory / "last.pt"
    if step is not None:
        path = directory / f"step_{step}.pt"
        save_checkpoint(ckpt, path)
        link_checkpoint(path, last)
    else:
        path = last
        save_checkpoint(ckpt, last)
    for old in drop:
        (directory / f"step_{old}.pt").unlink(missing_ok=True)
    return path


def write_best(
    directory: Path, *, step: int, cfg: NMTConfig, model: Seq2Seq, tokenizer: Tokenizer, dev_bleu: float
) -> None:
    """``best.pt``: weights, config and tokenizer (enough to translate, not to resume)."""
    save_checkpoint(
        {
            "step": step,
            "config": to_dict(cfg),
            "model": model.state_dict(),
            "tokenizer": tokenizer.to_state(),
            "dev_bleu": dev_bleu,
        },
        directory / "best.pt",
    )


# ------------------------------------------------------------------------------------------------ the end
def final_report(
    *,
    cfg: NMTConfig,
    model: Seq2Seq,
    tokenizer: Tokenizer,
    data: PreparedData,
    run_dir: Path,
    device: torch.device,
    state: TrainerState,
    facts: dict[str, Any],
) -> dict[str, Any]:
    """Decode the dev and test sets with the best checkpoint (if any; ``cfg.search``'s beam), score them and write
    ``results.json`` (:mod:`nmt.report`'s schema with the run's ``state`` and ``facts``).

    Returns:
        The results document.
    """
    best = run_dir / "checkpoints" / "best.pt"
    if best.exists():
        model.load_state_dict(load_checkpoint(best, map_location=device)["model"])
    translator = Translator(model, tokenizer, cfg.search, device=device, max_source_len=cfg.data.max_len)
    reports: list[SetReport] = []
    for data_set in [data.valid, *data.tests]:
        folder = "valid" if data_set is data.valid else "test"
        report = report_set(
            translator,
            TestSet(data_set.name, data_set.src_texts, data_set.tgt_texts),
            hypotheses_file=run_dir / folder / f"{data_set.name}.best.hyp",
            relative_to=run_dir,
        )
        reports.append(report)
        s = report.scores
        log.info(
            "%s %s (beam %d, best checkpoint step %d): BLEU %.2f chrF %.2f | %s | %s",
            folder, data_set.name, cfg.search.beam_size, state.best_step, s.bleu, s.chrf, s.bleu_signature,
            s.chrf_signature,
        )  # fmt: skip
    results = results_document(
        name=cfg.name,
        run_dir=str(run_dir),
        model=cfg.model.arch,
        steps=state.step,
        epochs=state.epoch,
        finished=state.finished,
        best_step=state.best_step,
        best_dev_bleu_during_training=state.best_bleu,
        valid_beam_size=cfg.train.valid_beam_size,
        train_seconds=round(state.train_seconds, 1),
        tgt_tokens=state.tgt_tokens,
        tokens_per_s=state.tgt_tokens / max(state.train_seconds, 1e-9),
        precision=cfg.train.precision.value,
        **facts,
        search=to_dict(cfg.search),
        dev=reports[0],
        test=reports[1:],
    )
    write_json(run_dir / "results.json", results)
    return results


def hparams(cfg: NMTConfig) -> dict[str, Any]:
    """The run's settings, flat (``data.src_lang``, ``tokenizer.vocab_size``, ``model.d_model``,
    ``train.alignment.weight``, ...), for TensorBoard's HParams: every section but the run's name."""

    def flat(prefix: str, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for name, item in value.items() for k, v in flat(f"{prefix}.{name}", item).items()}
        return {prefix: value}

    return {k: v for section, part in to_dict(cfg).items() if section != "name" for k, v in flat(section, part).items()}


def final_scores(results: dict[str, Any], best_step: int) -> dict[str, float]:
    """The HParams metrics of a finished run: dev BLEU/chrF of the best checkpoint, the test BLEU/chrF of the first
    test set (and the BLEU of each set by name when there are several), and the best step."""
    scores = {"hparam/best_step": float(best_step)}
    if results.get("dev"):
        scores |= {"hparam/dev_bleu": results["dev"]["bleu"], "hparam/dev_chrf": results["dev"]["chrf"]}
    tests = results.get("test") or []
    if tests:
        scores |= {"hparam/test_bleu": tests[0]["bleu"], "hparam/test_chrf": tests[0]["chrf"]}
    if len(tests) > 1:
        scores |= {f"hparam/test_bleu/{t['name']}": t["bleu"] for t in tests}
    return scores


def log_setup(
    *,
    dist: distributed.DistInfo,
    device: torch.device,
    tc: TrainConfig,
    model: Seq2Seq,
    tokenizer: Tokenizer,
    run_dir: Path,
    peak_flops: float,
    flops_per_token: float,
    pairs: int,
    batches_per_epoch: int,
    resumed_from: Path | None,
    state: TrainerState,
) -> None:
    """The start-up lines of ``train.log``: hardware, model, cost per token, data, new run or resume."""
    log.info(
        "world size %d (rank %d) | device %s | precision %s | threads %d | compile %s",
        dist.world_size, dist.rank, device, tc.precision.value, torch.get_num_threads(), tc.compile,
    )  # fmt: skip
    log.info(
        "model %s: %s parameters | tokenizer %r | run directory %s",
        type(model).__name__, f"{model.num_parameters():,}", tokenizer, run_dir,
    )  # fmt: skip
    log.info(
        "matmul peak %.0f GFLOP/s (%s); the model costs %.2f MFLOP per target token (forward + backward)",
        peak_flops / 1e9, "configured" if tc.matmul_peak_gflops else "measured", flops_per_token / 1e6,
    )  # fmt: skip
    log.info(
        "%d training pairs -> %d batches of <= %d padded tokens per epoch and rank",
        pairs, batches_per_epoch, tc.batch_tokens,
    )  # fmt: skip
    if resumed_from:
        log.info(
            "RESUMING from %s: step %d, epoch %d, best dev BLEU %.2f at step %d",
            resumed_from, state.step, state.epoch, state.best_bleu, state.best_step,
        )  # fmt: skip
    else:
        log.info("starting a new run (no checkpoint in %s)", run_dir / "checkpoints")

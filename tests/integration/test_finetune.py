"""Fine-tuning (``train.init_from``): a new run from a trained checkpoint's weights, model shape and tokenizer.

The source is the session's ``trained_checkpoint`` (a Transformer trained on Multi30k); the "other corpus" is a
slice of the IWSLT14 de-en sample (TED talks, tokenized and lowercased): the issue's typical use.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from corpus_io import read_gz_lines, write_lines
from integration_helpers import BIN

from nmt.checkpoint import checkpoint_config, load_checkpoint
from nmt.config import ConfigError, DataConfig, InitReset, NMTConfig, SearchConfig, TrainConfig, TransformerConfig
from nmt.errors import EXIT_USER_ERROR, CheckpointError
from nmt.training import finetune
from nmt.training.trainer import Trainer


@pytest.fixture(scope="module")
def iwslt(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 training pairs of the IWSLT14 sample, 40 valid and 40 test pairs: ``{train,valid,test}.{de,en}.gz``."""
    out = tmp_path_factory.mktemp("iwslt")
    src = data_root / "iwslt14-de-en"
    for split, name, n in (("train", "train_sample", 300), ("valid", "valid", 40), ("test", "test", 40)):
        for lang in ("de", "en"):
            write_lines(out / f"{split}.{lang}.gz", read_gz_lines(src / f"{name}.{lang}.gz", n))
    return out


def fine_tuning_config(iwslt: Path, cache: Path, source: Path, **train) -> NMTConfig:
    cfg = NMTConfig(
        name="finetune",
        data=DataConfig(
            train=str(iwslt / "train"),
            valid=str(iwslt / "valid"),
            test=[str(iwslt / "test")],
            max_len=100,
            cache_dir=str(cache),
        ),
        train=TrainConfig(
            init_from=str(source),
            batch_tokens=1024,
            lr=1e-3,
            warmup_steps=2,
            max_steps=4,
            eval_every=4,
            save_every=4,
            log_every=2,
            threads=1,
            heatmap_sentences=0,
            **train,
        ),
        search=SearchConfig(beam_size=2, max_len_a=1.2, max_len_b=5),
    )
    # The library takes the model and tokenizer sections from the checkpoint the way nmt-train does.
    return finetune.adopt(cfg, load_checkpoint(source)["config"], path=source)


def test_fine_tuning_starts_at_step_0_with_the_checkpoints_weights_bit_for_bit(
    trained_checkpoint, iwslt, tmp_path, one_thread
):
    source = load_checkpoint(trained_checkpoint)
    cfg = fine_tuning_config(iwslt, tmp_path / "cache", trained_checkpoint)
    assert cfg.model == checkpoint_config(source).model and cfg.data.train.endswith("train")  # data: this run's
    trainer = Trainer(cfg, tmp_path / "run")
    try:
        assert trainer.state.step == 0 and trainer.state.best_bleu < 0 and not trainer.updater.optimizer.state
        weights = trainer.model.state_dict()
        assert weights.keys() == source["model"].keys()
        assert all(torch.equal(weights[k], source["model"][k]) for k in weights), "weights differ from the checkpoint"
        assert trainer.tokenizer.to_state() == source["tokenizer"]  # and the IWSLT pairs were encoded with it
        assert trainer.updater.schedule.lr(1) == pytest.approx(1e-3 / 2)  # a new warm-up, this config's rate
        line = read_gz_lines(iwslt / "train.de.gz")[trainer.data.train.line_ids[0]]
        assert trainer.data.train.examples([0], sample=False)[0][0] == trainer.tokenizer.encode_src([line])[0]
        trainer.fit()
    finally:
        trainer.close()
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["step"] == 4 and last["config"]["train"]["init_from"] == str(trained_checkpoint)
    assert any(not torch.equal(last["model"][k], source["model"][k]) for k in last["model"])  # it trained
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps[0] == 2  # counted from 0, not from the source run's 300


def test_init_reset_schedule_keeps_the_adam_moments_of_a_resumable_checkpoint(
    trained_checkpoint, iwslt, tmp_path, one_thread
):
    last = trained_checkpoint.parent / "last.pt"
    source = load_checkpoint(last)
    cfg = fine_tuning_config(iwslt, tmp_path / "cache", last, init_reset=InitReset.schedule, weight_decay=0.01)
    trainer = Trainer(cfg, tmp_path / "run")
    try:
        state = trainer.updater.optimizer.state_dict()
        assert trainer.state.step == 0 and state["param_groups"][0]["weight_decay"] == 0.01  # this run's settings
        for i, moments in source["optimizer"]["state"].items():
            assert torch.equal(state["state"][i]["exp_avg"], moments["exp_avg"]), i
            assert torch.equal(state["state"][i]["exp_avg_sq"], moments["exp_avg_sq"]), i
    finally:
        trainer.close()
    weights_only = fine_tuning_config(iwslt, tmp_path / "cache", trained_checkpoint, init_reset=InitReset.schedule)
    with pytest.raises(CheckpointError, match=r"holds weights only.*last\.pt or a step_N\.pt"):
        Trainer(weights_only, tmp_path / "run2")


def test_a_config_that_contradicts_the_checkpoint_is_refused_naming_each_key(trained_checkpoint, iwslt, tmp_path):
    cfg = fine_tuning_config(iwslt, tmp_path / "cache", trained_checkpoint)
    cfg.model = TransformerConfig(**{**vars(cfg.model), "d_model": 32, "heads": 2})
    cfg.tokenizer.vocab_size = 8000
    cfg.model.dropout = 0.3  # free to change: not named
    with pytest.raises(ConfigError) as e:
        Trainer(cfg, tmp_path / "run")
    message = str(e.value)
    assert f"train.init_from={trained_checkpoint} has" in message
    assert "model.d_model=64 but the config asks for 32" in message and "model.heads=4 but" in message
    assert "tokenizer.vocab_size=500 but the config asks for 8000" in message and "dropout" not in message
    with pytest.raises(ConfigError, match="exclude each other"):
        TrainConfig(resume="last.pt", init_from="best.pt")


# --------------------------------------------------------------------------------------------- nmt-train
def command(run_dir: Path, iwslt: Path, source: Path, *overrides: str) -> list[str]:
    return [
        str(BIN / "nmt-train"),
        f"hydra.run.dir={run_dir}",
        f"train.init_from={source}",
        f"data.train={iwslt / 'train'}",
        f"data.valid={iwslt / 'valid'}",
        f"data.test=[{iwslt / 'test'}]",
        f"data.cache_dir={run_dir.parent / 'cache'}",
        "train.max_steps=4",
        "train.eval_every=4",
        "train.save_every=2",
        "train.log_every=2",
        "train.batch_tokens=1024",
        "train.warmup_steps=2",
        "train.threads=1",
        "train.heatmap_sentences=0",
        "search.beam_size=2",
        *overrides,
    ]


def test_nmt_train_fine_tunes_on_another_corpus_and_a_restart_resumes_without_the_source(
    trained_checkpoint, iwslt, tmp_path, cli_env
):
    source = tmp_path / "m30k_best.pt"
    shutil.copy(trained_checkpoint, source)
    run_dir = tmp_path / "run"
    # model.dropout may change; the shape (d_model 64, 2+2 layers, vocabulary of 500) comes from the checkpoint
    # although the default model config (d_model 256, 3+3 layers, 8k vocabulary) was composed.
    proc = subprocess.run(
        command(run_dir, iwslt, source, "model.dropout=0.2"), env=cli_env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert f"FINE-TUNING from {source}" in log and "starting a new run" in log
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    trained = load_checkpoint(trained_checkpoint)
    assert last["step"] == 4 and last["tokenizer"] == trained["tokenizer"]
    assert last["config"]["model"] == {**trained["config"]["model"], "dropout": 0.2}
    assert last["config"]["tokenizer"]["vocab_size"] == 500
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"][0]["sentences"] == 40 and results["steps"] == 4

    source.unlink()  # a restarted fine-tuning run resumes from its own last.pt and never reads init_from again
    proc = subprocess.run(
        command(run_dir, iwslt, source, "model.dropout=0.2", "train.max_steps=6"),
        env=cli_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "RESUMING from" in log and "step 4," in log and "not read, the run resumes" in log
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 6


def test_nmt_train_refuses_a_fine_tuning_config_with_another_shape(trained_checkpoint, iwslt, tmp_path, cli_env):
    cmd = command(tmp_path / "run", iwslt, trained_checkpoint, "model.d_model=128", "tokenizer.vocab_size=8000")
    proc = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "model.d_model=64 but the config asks for 128" in proc.stderr
    assert "tokenizer.vocab_size=500 but the config asks for 8000" in proc.stderr
    assert not list((tmp_path / "run").glob("checkpoints/*.pt"))  # refused before any training
    proc = subprocess.run(
        [*cmd[:-2], "model=rnn_bahdanau"], env=cli_env, capture_output=True, text=True, timeout=120
    )  # an RNN preset for a Transformer checkpoint
    assert (
        proc.returncode == EXIT_USER_ERROR and "model.arch='transformer' but the config asks for 'rnn'" in proc.stderr
    )

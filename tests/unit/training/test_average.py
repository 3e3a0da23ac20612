"""Checkpoint averaging: the element-wise mean of the weights, checked inputs (damaged files, other language pairs,
vocabularies or models are refused), ``--last [N]`` selection."""

from __future__ import annotations

import pytest
import torch
from checkpoint_damage import damage_record, largest_tensor_record

from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.cli.average import main
from nmt.errors import CheckpointError
from nmt.training.average import average_checkpoints, last_checkpoints


def write(path, step: int, weight: torch.Tensor, *, config: dict | None = None, tokenizer=None, **extra) -> None:
    model = {"w": weight, "count": torch.tensor(step), "half": weight.half()}
    state = {
        "step": step,
        "config": config or {"step": step},
        "model": model,
        "tokenizer": tokenizer or {"joint": b"sp"},
        **extra,
    }
    save_checkpoint(state, path)


def test_average_is_the_elementwise_mean_and_keeps_dtypes(tmp_path):
    ws = [torch.tensor([1.0, 2.0, 4.0]), torch.tensor([3.0, 2.0, 0.0]), torch.tensor([2.0, 5.0, 5.0])]
    for i, w in enumerate(ws):
        write(tmp_path / f"step_{10 * (i + 1)}.pt", 10 * (i + 1), w, optimizer={"state": {}})
    avg = average_checkpoints([tmp_path / f"step_{n}.pt" for n in (10, 20, 30)])
    assert torch.equal(avg["model"]["w"], torch.tensor([2.0, 3.0, 3.0]))
    assert avg["model"]["half"].dtype == torch.float16
    assert int(avg["model"]["count"]) == 30  # integer buffers come from the newest checkpoint
    assert avg["step"] == 30 and avg["config"] == {"step": 30}
    assert "optimizer" not in avg  # weights only: not a resumable checkpoint


def test_last_n_picks_the_newest_step_files_by_number_and_cli_writes_a_loadable_file(tmp_path, capsys):
    ckpts = tmp_path / "checkpoints"
    for step in (5, 10, 100):  # 100 sorts before 5 as text: selection must be numeric
        write(ckpts / f"step_{step}.pt", step, torch.full((2,), float(step)))
    write(ckpts / "last.pt", 100, torch.zeros(2))
    assert [p.name for p in last_checkpoints(tmp_path, 2)] == ["step_10.pt", "step_100.pt"]
    assert main(["--last", "2", str(tmp_path), "--output", str(tmp_path / "avg.pt")]) == 0
    avg = load_checkpoint(tmp_path / "avg.pt")
    assert torch.equal(avg["model"]["w"], torch.full((2,), 55.0))
    assert "step_10.pt" in capsys.readouterr().err


def test_mismatched_models_and_missing_files_are_clear_errors(tmp_path, capsys):
    write(tmp_path / "a.pt", 1, torch.zeros(3))
    write(tmp_path / "b.pt", 2, torch.zeros(4))
    with pytest.raises(CheckpointError, match=r"b\.pt is a different model than .*a\.pt.* w is \(4,\) float32 in"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(CheckpointError, match=r"no step_N\.pt checkpoints"):
        last_checkpoints(tmp_path, 2)
    assert (
        main(["--inputs", str(tmp_path / "a.pt"), str(tmp_path / "nope.pt"), "--output", str(tmp_path / "o.pt")]) == 2
    )
    err = capsys.readouterr().err
    assert "nope.pt" in err and "Traceback" not in err
    assert not (tmp_path / "o.pt").exists()


def test_last_without_n_averages_as_many_checkpoints_as_the_run_keeps(tmp_path, capsys):
    ckpts = tmp_path / "checkpoints"
    for step in (10, 20, 30, 40):  # one more than keep_last: a run killed before it deleted the oldest
        write(ckpts / f"step_{step}.pt", step, torch.full((2,), float(step)), config={"train": {"keep_last": 3}})
    assert [p.name for p in last_checkpoints(tmp_path)] == ["step_20.pt", "step_30.pt", "step_40.pt"]
    assert main(["--last", str(tmp_path), "--output", str(tmp_path / "avg.pt")]) == 0
    assert torch.equal(load_checkpoint(tmp_path / "avg.pt")["model"]["w"], torch.full((2,), 30.0))
    assert "averaged 3 checkpoints" in capsys.readouterr().err

    short = tmp_path / "short"  # a run that stopped before it saved keep_last step checkpoints: all it has
    for step in (10, 20):
        write(short / f"step_{step}.pt", step, torch.full((2,), float(step)), config={"train": {"keep_last": 5}})
    assert [p.name for p in last_checkpoints(short)] == ["step_10.pt", "step_20.pt"]
    with pytest.raises(CheckpointError, match=r"holds only 2 .*raise it when training"):
        last_checkpoints(short, 3)


def test_last_takes_one_or_two_values(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--last", "1", "2", "3", "--output", str(tmp_path / "x.pt")])
    assert "--last takes [N] RUN_DIR" in capsys.readouterr().err
    assert main(["--last", "zero", str(tmp_path), "--output", str(tmp_path / "x.pt")]) == 2
    assert "positive number" in capsys.readouterr().err


def pair(src: str, tgt: str, **model) -> dict:
    return {"data": {"src_lang": src, "tgt_lang": tgt}, "model": {"arch": "transformer", **model}}


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"config": pair("en", "de")}, r"b\.pt translates en->de but .*a\.pt translates de->en"),
        ({"tokenizer": {"src": b"x", "tgt": b"y"}}, r"b\.pt uses a different vocabulary"),
        ({"weight": torch.zeros(5), "config": pair("de", "en", d_model=64)}, r"model settings: model\.d_model 64 vs"),
        ({"weight": torch.zeros(3, dtype=torch.float64)}, r"w is \(3,\) float64 in .*b\.pt but \(3,\) float32"),
    ],
)
def test_checkpoints_that_do_not_belong_together_are_not_averaged(tmp_path, capsys, other, message):
    write(tmp_path / "a.pt", 1, torch.zeros(3), config=pair("de", "en"))
    options = {"config": pair("de", "en"), **other}
    write(tmp_path / "b.pt", 2, options.pop("weight", torch.zeros(3)), **options)
    with pytest.raises(CheckpointError, match=message):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert main(["--inputs", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--output", str(tmp_path / "o.pt")]) == 2
    assert "nmt-average: error:" in capsys.readouterr().err and not (tmp_path / "o.pt").exists()


def test_a_damaged_input_is_refused_not_copied_into_the_average(tmp_path, capsys):
    for step in (1, 2):
        write(tmp_path / f"step_{step}.pt", step, torch.randn(1000))
    damage_record(tmp_path / "step_2.pt", largest_tensor_record(tmp_path / "step_2.pt"))
    assert main(["--last", "2", str(tmp_path), "--output", str(tmp_path / "avg.pt")]) == 2
    err = capsys.readouterr().err
    assert "step_2.pt is damaged" in err and "CRC-32" in err
    assert not (tmp_path / "avg.pt").exists()

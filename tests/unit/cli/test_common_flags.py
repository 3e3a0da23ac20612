"""One name per setting across the argparse tools: search flags generated from SearchConfig, the alignment
flags, deprecated spellings that still work with a warning, ``--version`` everywhere and the ``nmt`` command."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from nmt import __version__
from nmt.cli import align, evaluate, main, translate
from nmt.config import InferencePrecision, SearchConfig


def test_every_search_field_is_a_flag_of_nmt_translate_with_its_help():
    parser = translate.build_parser()
    flags = {a.dest: a for a in parser._actions if a.help != argparse.SUPPRESS}
    for f in dataclasses.fields(SearchConfig):
        assert f.name in flags, f.name
        assert flags[f.name].help == f.metadata["help"]
        assert flags[f.name].default is None  # only what is given overrides the checkpoint's search config
    args = parser.parse_args(["-c", "x.pt", "-b", "3", "--lenpen", "0.6", "--sampling", "--batch-tokens", "99"])
    assert translate.overrides(args) == {"beam_size": 3, "lenpen": 0.6, "sampling": True, "batch_tokens": 99}
    args = parser.parse_args(["-c", "x.pt", "--sampling"])
    assert translate.overrides(args) == {"sampling": True, "beam_size": 1}


def test_nmt_evaluate_offers_the_search_fields_that_apply_to_one_best_output():
    args = evaluate.build_parser().parse_args(["-c", "x.pt", "--beam-size", "2", "--max-len-b", "7"])
    assert {k: getattr(args, k) for k in ("beam_size", "max_len_b")} == {"beam_size": 2, "max_len_b": 7}
    with pytest.raises(SystemExit):
        evaluate.build_parser().parse_args(["-c", "x.pt", "--nbest", "2"])


@pytest.mark.parametrize(
    ("tool", "old", "new", "value"),
    [
        (translate, ["--max-tokens", "64"], "batch_tokens", 64),
        (translate, ["--align-layer", "1"], "alignment_layer", 1),
        (translate, ["--align-heads", "0", "1"], "alignment_heads", [0, 1]),
        (translate, ["--align-threshold", "0.3"], "alignment_threshold", 0.3),
        (evaluate, ["--max-tokens", "64"], "batch_tokens", 64),
        (evaluate, ["--align-heads", "2"], "alignment_heads", [2]),
        (align, ["--layer", "-1"], "alignment_layer", -1),
        (align, ["--heads", "0,1"], "alignment_heads", [0, 1]),
        (align, ["--threshold", "0.5"], "alignment_threshold", 0.5),
    ],
)
def test_old_spellings_still_work_with_a_deprecation_warning(tool, old, new, value, capsys):
    args = tool.build_parser().parse_args(["-c", "x.pt", *old])
    assert getattr(args, new) == value
    flag = "--" + new.replace("_", "-")
    assert f"warning: {old[0]} is deprecated, use {flag}" in capsys.readouterr().err
    assert old[0] not in tool.build_parser().format_help()  # hidden


@pytest.mark.parametrize("tool", [translate, evaluate, align])
def test_the_alignment_flags_have_one_name_and_one_list_syntax(tool):
    args = tool.build_parser().parse_args(["-c", "x.pt", "--alignment-layer", "0", "--alignment-heads", "0", "1"])
    assert (args.alignment_layer, args.alignment_heads) == (0, [0, 1])


def test_precision_is_the_enum():
    args = translate.build_parser().parse_args(["-c", "x.pt", "--precision", "bf16"])
    int8 = translate.build_parser().parse_args(["-c", "x.pt", "--precision", "int8"])
    assert int8.precision is InferencePrecision.int8
    assert args.precision is InferencePrecision.bf16
    assert translate.build_parser().parse_args(["-c", "x.pt"]).precision is None  # the engine chooses: nmt fp32
    assert evaluate.build_parser().parse_args(["-c", "x.pt"]).precision is InferencePrecision.fp32


@pytest.mark.parametrize("tool", [translate, evaluate, align])
def test_version(tool, capsys):
    with pytest.raises(SystemExit) as e:
        tool.build_parser().parse_args(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_the_nmt_command_lists_the_tools_and_runs_them(capsys):
    assert main.main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in main.COMMANDS)
    assert main.main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"nmt {__version__}"
    assert main.main(["frobnicate"]) == 2 and "unknown command 'frobnicate'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main.main(["translate", "--version"])
    assert e.value.code == 0 and "nmt-translate" in capsys.readouterr().out


def test_nmt_translate_workers_default_to_one_single_threaded_worker_per_cpu_thread(capsys):
    parser = translate.build_parser()
    assert parser.parse_args(["-c", "x.pt"]).workers == "auto"
    assert parser.parse_args(["-c", "x.pt", "--workers", "3"]).workers == 3
    assert translate.resolve_workers("auto", 4, "cpu") == 4  # then one torch thread each
    assert translate.resolve_workers("auto", 4, "cuda") == 1
    assert translate.resolve_workers(2, 4, "cuda") == 2  # what is asked for, anywhere
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["-c", "x.pt", "--workers", "many"])
    assert e.value.code == 2
    assert "expected a number of workers or 'auto', got 'many'" in capsys.readouterr().err

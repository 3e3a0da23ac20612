"""One exit-status convention for every tool, at the end of every --help (nmt.errors, nmt.cli.common)."""

from __future__ import annotations

import importlib

import pytest

from nmt.cli import main as nmt_main
from nmt.cli.common import EXIT_STATUS_HELP
from nmt.errors import EXIT_INTERNAL_ERROR, EXIT_OK, EXIT_USER_ERROR

TOOLS = ["translate", "evaluate", "align", "average", "sweep_summary", "export", "serve"]


def test_the_convention():
    assert (EXIT_OK, EXIT_INTERNAL_ERROR, EXIT_USER_ERROR) == (0, 1, 2)
    for line in ("0        success", "1        an internal error", "2        a user error", "128+N    stopped by"):
        assert line in EXIT_STATUS_HELP


@pytest.mark.parametrize("tool", TOOLS)
def test_every_argparse_tool_ends_its_help_with_the_exit_statuses(tool, capsys):
    module = importlib.import_module(f"nmt.cli.{tool}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(EXIT_STATUS_HELP.rstrip()) and out.count("exit status (") == 1


def test_nmt_lists_them_and_an_unknown_command_is_a_user_error(capsys):
    assert nmt_main.main([]) == 0 and EXIT_STATUS_HELP in capsys.readouterr().out
    assert nmt_main.main(["trian"]) == EXIT_USER_ERROR
    assert "nmt: error: unknown command 'trian'" in capsys.readouterr().err


def test_nmt_train_documents_them_in_its_module_docstring():
    import nmt.cli.train as train

    assert "Exit status, as for every nmt tool" in (train.__doc__ or "")

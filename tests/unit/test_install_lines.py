"""Every install line the project shows (README, --help, error hints, presets, scripts) installs *this* project: its
distribution is ``nmt-toolkit``, and ``nmt`` on the package index is somebody else's."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# What may follow "pip install": this checkout (editable or not), a wheel of it, pinned torch, or a named
# third-party dependency; never the bare name nmt (with or without extras).
EXTRAS = r"(\[[A-Za-z0-9,]+\])?"
OURS = re.compile(rf"^(-e )?'?\.{EXTRAS}'?$|^'?nmt_toolkit-[^ ]+\.whl{EXTRAS}'?$")
THIRD_PARTY = re.compile(r"^'?(torch==[0-9.]+|ctranslate2>=[0-9.]+|eflomal|--upgrade|sqlalchemy<2' 'alembic<1\.14)'?$")


def install_lines() -> list[tuple[str, str]]:
    files = [REPO / "README.md", *(REPO / "nmt").rglob("*.py"), *(REPO / "configs").rglob("*.yaml")]
    files += [*(REPO / "scripts").rglob("*.py"), REPO / "Makefile"]
    found = []
    for path in files:
        for m in re.finditer(r"pip install (-q )?((-e )?'[^']*'( '[^']*')?|[^\s`)\"']+)", path.read_text("utf-8")):
            found.append((str(path.relative_to(REPO)), m.group(2)))
    return found


def test_the_distribution_is_nmt_toolkit_and_the_package_nmt():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^name = "nmt-toolkit"', pyproject, re.MULTILINE)
    assert (REPO / "nmt" / "__init__.py").exists()


def test_every_install_line_installs_this_project():
    lines = install_lines()
    assert len(lines) > 10  # the README's, the hints', the presets'
    wrong = [(where, what) for where, what in lines if not (OURS.match(what) or THIRD_PARTY.match(what))]
    assert wrong == []

"""A wheel built from the source tree carries the Hydra presets, and ``nmt-train`` composes from that copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of what a source distribution holds, so that building leaves no build/ in the checkout.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("nmt", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    # --no-build-isolation: no download; setuptools comes with the test environment.
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)]
    subprocess.run(cmd, check=True, cwd=src, env={**os.environ, "PIP_NO_INPUT": "1"})
    (path,) = out.glob("nmt_toolkit-*.whl")  # the distribution name; the import package is nmt
    return path


def test_the_wheel_is_nmt_toolkit_holding_the_package_nmt(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (metadata,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        lines = z.read(metadata).decode("utf-8").splitlines()
        names = z.namelist()
    assert "Name: nmt-toolkit" in lines  # "nmt" on the package index is an unrelated project
    assert "nmt/__init__.py" in names and not any(n.startswith("nmt_toolkit/") for n in names)


def test_wheel_holds_every_preset(wheel: Path) -> None:
    presets = {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    with zipfile.ZipFile(wheel) as z:
        packaged = {n.removeprefix("nmt/configs/") for n in z.namelist() if n.startswith("nmt/configs/")}
    assert "train.yaml" in presets
    assert presets <= packaged


def test_wheel_ships_the_explorer_page_and_nmt_serve(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry_points).decode("utf-8")
    assert {f"nmt/serve/static/{n}" for n in ("index.html", "explorer.js", "explorer.css")} <= names
    assert "nmt-serve = nmt.cli.serve:main" in scripts


def test_installed_package_composes_from_its_own_configs(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    code = "from nmt.cli.train import config_dir, main; print(config_dir()); main()"
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code, "+experiment=m30k_en_de_transformer", "--cfg", "job"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    first, rest = out.stdout.split("\n", 1)
    assert Path(first) == site / "nmt" / "configs"
    assert "src_lang: en" in rest and "arch: transformer" in rest

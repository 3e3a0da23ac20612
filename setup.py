"""Ships ``configs/`` (the Hydra presets, kept at the top of the source tree) inside the wheel as ``nmt/configs``.

Everything else about the package is in pyproject.toml; ``nmt.cli.train.config_dir`` finds the source tree's
``configs/`` first (editable installs) and the packaged copy otherwise.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        source = ROOT / "configs"
        if source.is_dir() and not self.editable_mode:
            target = Path(self.build_lib) / "nmt" / "configs"
            shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildPyWithConfigs})

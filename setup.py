"""Build hook: an installed package carries the data the library reads (steps.DATA_ROOT).

The repository keeps `taxonomies/`, `cards/` and `seeds/sample/` at the top level (the design's
layout); a wheel gets a copy of them under `steps/data/`, where `steps.DATA_ROOT` finds them.
Everything else is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("taxonomies", "cards", "seeds/sample")


class BuildWithData(build_py):
    """build_py that also copies the data folders into the built `steps` package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout
            return
        for folder in DATA:
            target = Path(self.build_lib) / "steps" / "data" / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(Path(__file__).parent / folder, target)


setup(cmdclass={"build_py": BuildWithData})

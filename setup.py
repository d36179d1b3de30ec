"""Build hook: copy boards/ and firmware_templates/ into the wheel as pipeline/_resources/.

They stay at the top of the source tree (where engineers look for them); `pipeline.resources` finds
either place. Everything else about the package is declared in pyproject.toml.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RESOURCES = ("boards", "firmware_templates")


class BuildWithResources(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders directly
            return
        root = Path(__file__).resolve().parent
        for name in RESOURCES:
            dest = Path(self.build_lib) / "pipeline" / "_resources" / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(root / name, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithResources})

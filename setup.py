"""Bundles the content folders (evals/, exporters/, dashboards/) and the lock (constraints.txt) into the wheel
as workbench/_bundled/.

They are content, not packages: PyPI already owns the import names `evals` and `exporters`.
An editable install reads them straight from the repository instead (see workbench/system/content.py).
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONTENT = ("evals", "exporters", "dashboards")


class BuildWithContent(build_py):
    def run(self):
        super().run()
        root = Path(__file__).parent
        for name in CONTENT:
            target = Path(self.build_lib) / "workbench" / "_bundled" / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(root / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # The lock set-up installs from: `wb doctor` compares the installed versions against it.
        shutil.copy(root / "constraints.txt", Path(self.build_lib) / "workbench" / "_bundled" / "constraints.txt")


setup(cmdclass={"build_py": BuildWithContent})

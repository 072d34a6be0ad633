"""Locating the content folders (evals/, exporters/, dashboards/): user override, wheel, or repository."""

import os
from pathlib import Path

_PACKAGE = Path(__file__).parent.parent  # workbench/
_ENV = {"evals": "WB_EVALS_DIR", "exporters": "WB_EXPORTERS_DIR", "dashboards": "WB_DASHBOARDS_DIR"}


def content_dir(name: str, explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(_ENV[name])
    if env:
        return Path(env)
    bundled = _PACKAGE / "_bundled" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE.parent / name


def lock_file() -> Path:
    """The pip constraints file set-up installs from (every dependency's version, from one resolve)."""
    bundled = _PACKAGE / "_bundled" / "constraints.txt"
    return bundled if bundled.is_file() else _PACKAGE.parent / "constraints.txt"

"""Where a command will write, checked before any work: an output folder, a report file, the store.

A read-only parent, a file where a folder must be, or a folder where a file must be is a one-line BadInput
before a model loads or a run is opened, not a traceback after the work."""

import os
from pathlib import Path

from workbench.errors import BadInput


def check_new_folder(path: Path, what: str = "output folder") -> None:
    """`path` will be created (or filled, when it is an empty folder)."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise BadInput(f"{what} '{path}' is a file, not a folder")
        if any(path.iterdir()):
            raise BadInput(f"{what} '{path}' is not empty; choose a new or empty folder")
    _check_creatable(path, what)


def check_new_file(path: Path, what: str) -> None:
    """`path` will be written (replaced if it exists)."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{what} '{path}' is a folder, expected a file path")
    _check_creatable(path, what)


def check_store_folder(path: Path, *, must_exist: bool = False) -> None:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"store '{path}' is a file, not a folder (--store or WB_STORE)")
    if must_exist and not path.is_dir():
        raise BadInput(f"store '{path}': no such folder (--store or WB_STORE)")


def check_store_writable(path: Path) -> None:
    check_store_folder(path)
    _check_creatable(Path(path) / "runs", "store")


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing folder on the way to `path` must be writable (os.access sees read-only mounts and
    immutable folders, even for root)."""
    probe = path.absolute() if path.exists() and path.is_dir() else path.absolute().parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise BadInput(f"{what} '{path}': '{probe}' is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BadInput(f"{what} '{path}': cannot write in '{probe}' (read-only or permission denied)")

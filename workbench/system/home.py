"""Where workbench keeps things: WB_HOME (caches: the default model, llama.cpp tools) and the store."""

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("WB_HOME") or Path.home() / ".cache" / "ckpt-workbench")


def store_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("WB_STORE")
    return Path(env) if env else home() / "store"


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """Local mirror of benchmark datasets (hub schema), from --data-dir or WB_DATA_DIR."""
    value = explicit or os.environ.get("WB_DATA_DIR")
    return Path(value) if value else None

"""Chat benchmarks run as suite tasks (`benchmark:` in a task): their items read from the data mirror, their
answers graded as the benchmark's authors grade them. One module per benchmark, each with
`load_items(data_dir) -> list[dict]` (chat items: id, messages, reference, tags, metadata)."""

import importlib
from pathlib import Path

from workbench.config import BENCHMARKS


def load_items(name: str, data_dir: Path | None) -> list[dict]:
    assert name in BENCHMARKS, name
    return importlib.import_module(f"workbench.benchmarks.{name}").load_items(data_dir)

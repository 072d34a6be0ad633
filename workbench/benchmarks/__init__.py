"""Chat benchmarks run as suite tasks (`benchmark:` in a task): their items read from the data mirror, their
answers graded as the benchmark's authors grade them. One module per benchmark, each with
`load_items(data_dir) -> list[dict]` (chat items: id, messages, reference, tags, metadata) and
`metric_names(label) -> list[str]` (the metrics its scorer reports, before breakdowns)."""

import importlib
from pathlib import Path

from workbench.config import BENCHMARKS


def load_items(name: str, data_dir: Path | None) -> list[dict]:
    assert name in BENCHMARKS, name
    return importlib.import_module(f"workbench.benchmarks.{name}").load_items(data_dir)


def metric_names(name: str, label: str) -> list[str]:
    assert name in BENCHMARKS, name
    return importlib.import_module(f"workbench.benchmarks.{name}").metric_names(label)

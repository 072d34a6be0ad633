"""Chat benchmarks run as suite tasks (`benchmark:` in a task): their items read from the data mirror, their
answers graded as the benchmark's authors grade them. One module per benchmark, each with
`load_items(data_dir) -> list[dict]` (chat items: id, messages, reference, tags, metadata) and
`metric_names(label) -> list[str]` (the metrics its scorer reports, before breakdowns)."""

import importlib
from pathlib import Path

from workbench.config import BENCHMARKS
from workbench.errors import BadInput


def load_items(name: str, data_dir: Path | None) -> list[dict]:
    assert name in BENCHMARKS, name
    return importlib.import_module(f"workbench.benchmarks.{name}").load_items(data_dir)


def metric_names(name: str, label: str) -> list[str]:
    assert name in BENCHMARKS, name
    return importlib.import_module(f"workbench.benchmarks.{name}").metric_names(label)


def mirror_file(name: str, data_dir: Path | None, relpath: str, layout: str) -> Path:
    """`<data dir>/<name>/<relpath>`, or BadInput naming what is missing (`layout`: what the folder holds)."""
    if data_dir is None:
        raise BadInput(f"benchmark {name} reads {name}/{relpath} from the data mirror: give --data-dir or set "
                       "WB_DATA_DIR")
    path = Path(data_dir) / name / relpath
    if not path.is_file():
        raise BadInput(f"{path}: missing from the data dir (benchmark {name} needs {name}/{relpath}: {layout})")
    return path

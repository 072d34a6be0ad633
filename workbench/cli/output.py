"""Console helpers: progress and messages go to stderr; --json puts exactly one object on stdout."""

import json
import os
import sys

from rich.console import Console

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)  # result tables; progress and messages go to err
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or logged (CI): rich would assume 80 columns and truncate metric names


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    err.print(message)

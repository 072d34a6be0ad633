"""Console helpers: progress and messages go to stderr; --json puts exactly one object on stdout."""

import json
import sys

from rich.console import Console

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)  # result tables; progress and messages go to err


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    err.print(message)

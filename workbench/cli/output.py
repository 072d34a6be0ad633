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


def library_stdout_to_stderr():
    """Libraries print banners on stdout (GPTQModel's when peft imports it, TRL's, tqdm's): stdout is for wb's
    own output, --json's one object above all."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr)

"""What a command prints on stdout: its result table, or with --json exactly one JSON object."""

import os
import sys

from rich.console import Console

from workbench.store.files import strict_json

out = Console(highlight=False)  # result tables; progress and messages go to stderr (workbench.system.console)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or logged (CI): rich would assume 80 columns and truncate metric names


def emit_json(obj) -> None:
    sys.stdout.write(strict_json(obj, indent=2) + "\n")  # NaN as null: --json output is strict JSON
    sys.stdout.flush()

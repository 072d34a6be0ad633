"""Options shared by several verbs."""

from pathlib import Path
from typing import Optional

import typer

StoreOpt = typer.Option(None, "--store", help="Results store folder (default: $WB_STORE or $WB_HOME/store).")
JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


def command_line() -> str:
    import shlex
    import sys

    return "wb " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def store_for(path: Optional[Path]):
    from workbench.home import store_dir
    from workbench.store import Store

    return Store(store_dir(path))

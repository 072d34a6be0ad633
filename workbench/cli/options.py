"""Options shared by several verbs."""

from pathlib import Path
from typing import Optional

import typer

StoreOpt = typer.Option(None, "--store", help="Results store folder (default: $WB_STORE or $WB_HOME/store).")
JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


def command_line() -> str:
    import shlex
    import sys

    from workbench.store.tracking import redact_url  # a tracking URI's user:password never reaches a manifest

    return "wb " + " ".join(shlex.quote(redact_url(a)) for a in sys.argv[1:])


def store_for(path: Optional[Path], *, writing: bool = True):
    """The store a verb reads (writing=False) or records a run in; checked to be usable before any work."""
    from workbench.store import Store
    from workbench.system.home import store_dir
    from workbench.system.output_paths import check_store_folder, check_store_writable

    root = store_dir(path)
    if writing:
        check_store_writable(root)
    else:
        check_store_folder(root)
    return Store(root)

"""Options shared by several verbs."""

import typer

StoreOpt = typer.Option(None, "--store", help="Results store folder (default: $WB_STORE or $WB_HOME/store).")
JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


def command_line() -> str:
    import shlex
    import sys

    from workbench.system.urls import redact_urls  # a URL's user:password or ?token= never reaches a manifest

    return "wb " + " ".join(shlex.quote(redact_urls(a)) for a in sys.argv[1:])


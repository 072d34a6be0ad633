"""Options shared by several verbs."""

import typer

StoreOpt = typer.Option(None, "--store", help="Results store folder (default: $WB_STORE or $WB_HOME/store).")
JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


def command_line() -> str:
    import shlex
    import sys

    from workbench.store.tracking import redact_url  # a tracking URI's user:password never reaches a manifest

    return "wb " + " ".join(shlex.quote(redact_url(a)) for a in sys.argv[1:])


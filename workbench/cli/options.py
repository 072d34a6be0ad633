"""Options shared by several verbs."""

import math

import typer

from workbench.errors import BadInput

StoreOpt = typer.Option(None, "--store", help="Results store folder (default: $WB_STORE or $WB_HOME/store).")
JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


def finite(ctx: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
    """A float option's callback: click's ranges let nan and inf through (every comparison with nan is false)."""
    if value is not None and not math.isfinite(value):
        raise BadInput(f"{param.opts[0]}: {value} is not a finite number")
    return value


def command_line() -> str:
    import shlex
    import sys

    from workbench.system.urls import redact_urls  # a URL's user:password or ?token= never reaches a manifest

    return "wb " + " ".join(shlex.quote(redact_urls(a)) for a in sys.argv[1:])


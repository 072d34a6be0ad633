"""`wb`: the typer app. Verb modules import nothing heavy at module level, so `wb --help` stays fast."""

import os
import sys

import typer

from workbench.errors import EXIT_USAGE, WorkbenchError

app = typer.Typer(
    name="wb",
    help="ckpt-workbench: evaluate, gate, merge and export fine-tuned LLM checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from workbench.cli import (
        compare,
        dashboard,
        doctor,
        eval,
        export,
        judge,
        merge,
        runs,
        train,
    )

    for module in (train, eval, judge, merge, export, compare, dashboard, runs, doctor):
        module.register(app)


def run() -> None:
    # Torch spins idle threads that starve the other core under contention (5x slower steps here).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    for noisy in ("torchao", "torch.utils._pytree"):  # torchao (GPTQModel needs it) warns on every model load
        logging.getLogger(noisy).setLevel(logging.ERROR)  # with CPU-only torch; harmless, and not ours to show
    _register()
    try:
        code = app(standalone_mode=False)
    except WorkbenchError as exc:
        from workbench.cli.output import err

        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # typer vendors click: its usage errors derive from this
        exc.show()
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(code, int):
        sys.exit(code)

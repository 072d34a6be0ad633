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
        data,
        doctor,
        eval,
        export,
        judge,
        merge,
        runs,
        train,
    )

    for module in (train, data, eval, judge, merge, export, compare, dashboard, runs, doctor):
        module.register(app)


@app.callback()
def _options(quiet: bool = typer.Option(False, "--quiet",
                                        help="Print nothing but the result and errors (also accepted after the verb).")):
    pass  # read in run(), before any library is imported


def _take_quiet(argv: list[str]) -> bool:
    """Remove every --quiet before a `--` from argv; True if there was one."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = "--quiet" in argv[:end]
    argv[:end] = [a for a in argv[:end] if a != "--quiet"]
    return found


def run() -> None:
    # Torch spins idle threads that starve the other core under contention (5x slower steps here).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from workbench.cli.output import configure

    configure(quiet=_take_quiet(sys.argv))
    import logging

    for noisy in ("torchao", "torch.utils._pytree"):  # torchao (GPTQModel needs it) warns on every model load
        logging.getLogger(noisy).setLevel(logging.ERROR)  # with CPU-only torch; harmless, and not ours to show
    _register()
    try:
        code = app(standalone_mode=False)
    except WorkbenchError as exc:
        from workbench.cli.output import errors

        errors.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # typer vendors click: its usage errors derive from this
        exc.show()
        code = getattr(exc, "exit_code", EXIT_USAGE)
    except KeyboardInterrupt:
        code = 130
    _exit(code if isinstance(code, int) else 0)


def _exit(code: int) -> None:
    """Exit like Python does, minus the teardown of every module: once torch and transformers are loaded, that
    teardown takes about a second here, longer than some commands' own work. Threads are joined, exit handlers
    (temporary folders, child processes) run and streams are flushed first."""
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter itself calls at exit
    if "torch" not in sys.modules or shutdown is None:
        sys.exit(code)
    import atexit
    import logging

    shutdown()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)

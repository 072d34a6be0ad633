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


_registered = False
PIPED_HELP_WIDTH = 100


def _register() -> None:
    global _registered
    if _registered:  # main() may run more than once in a process (tests)
        return
    _registered = True
    from workbench.cli import (
        compare,
        dashboard,
        data,
        doctor,
        eval,
        export,
        import_adapter,
        judge,
        merge,
        replay,
        report,
        review,
        runs,
        schema,
        serve,
        sweep,
        train,
    )

    for module in (train, data, eval, sweep, judge, merge, import_adapter, export, compare, report, dashboard, runs,
                   review, serve, replay, schema, doctor):
        module.register(app)


@app.callback()
def _options(quiet: bool = typer.Option(False, "--quiet",
                                        help="Print nothing but the result and errors (also accepted after the verb)."),
             verbose: bool = typer.Option(False, "--verbose", "-v",
                                          help="Also show what the libraries wb loads print: their warnings, banners "
                                               "and loading bars (also accepted after the verb).")):
    pass  # read in run(), before any library is imported


def _take_flag(argv: list[str], *names: str) -> bool:
    """Remove every one of names before a `--` from the arguments; True if there was one."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = any(a in names for a in argv[:end])
    argv[:end] = [a for a in argv[:end] if a not in names]
    return found


def run() -> None:
    _exit(main())


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code. Every error leaves here as one line on stderr."""
    from workbench.system.console import configure
    from workbench.system.library_defaults import apply_library_defaults

    args = list(sys.argv[1:] if argv is None else argv)
    configure(quiet=_take_flag(args, "--quiet"), verbose=_take_flag(args, "--verbose", "-v"))
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS") and not os.environ.get("TERMINAL_WIDTH"):
        os.environ["TERMINAL_WIDTH"] = str(PIPED_HELP_WIDTH)  # typer's help, piped: rich would squeeze it to 80
    apply_library_defaults()
    _pin_hf_home()
    _register()
    try:
        code = app(args=args, standalone_mode=False)
    except WorkbenchError as exc:
        code = _report(exc)
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # typer vendors click: its usage errors derive from this
        code = _usage_error(exc)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        from workbench.system.failures import translate

        known = translate(exc)
        if known is None:
            raise
        code = _report(known)
    return code if isinstance(code, int) else 0


def _report(exc: WorkbenchError) -> int:
    from rich.markup import escape

    from workbench.system.console import errors, visible

    # a path may hold [brackets] or a control character
    errors.print(f"[bold red]error:[/] {escape(visible(str(exc)))}", soft_wrap=True)
    return exc.exit_code


def _usage_error(exc) -> int:
    """Two lines, not click's four: the usage, and the error with where to read more."""
    from workbench.system.console import errors as err

    ctx = getattr(exc, "ctx", None)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if not message.strip():  # `wb` alone: the help, as click shows it
        exc.show()
        return getattr(exc, "exit_code", EXIT_USAGE)
    if ctx is not None:
        err.print(ctx.get_usage(), markup=False, soft_wrap=True)
        message += f" (see '{ctx.command_path} --help')"
    err.print(f"error: {message}", markup=False, soft_wrap=True)
    return getattr(exc, "exit_code", EXIT_USAGE)


def _pin_hf_home() -> None:
    """Name the Hugging Face cache the user already has (HF_HOME, else the hub's default) before any third-party
    import: tokenicer (GPTQModel's) does os.environ.setdefault("HF_HOME", "/tmp/tokenicer_hf_home") on import,
    which would move the hub and remote-code caches into a world-writable /tmp folder for the whole process."""
    if not os.environ.get("HF_HOME"):
        if not os.environ.get("HF_DATASETS_CACHE"):
            # lm-eval loads the local benchmark mirrors through `datasets`, which caches Arrow copies of them:
            # derived files, kept with wb's other caches under WB_HOME (safe to delete), not in ~/.cache/huggingface
            from workbench.system.home import home

            os.environ["HF_DATASETS_CACHE"] = str(home() / "hf-datasets")
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["HF_HOME"] = os.path.join(cache, "huggingface")


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

"""wb's voice on stderr: messages, warnings and progress go there; stdout is left to a command's result (and
--json's one object). Library code reports through here; `configure` sets how every library in the process
reports progress, before any of them is imported.

On a terminal, progress redraws in place. Anywhere else (CI, a pipe, a log file) it prints an occasional line with
counts and rates instead, and so do the tqdm bars of lm-eval, transformers, datasets and TRL (tqdm reads
TQDM_MININTERVAL). Quiet (`wb --quiet`) prints nothing but the result and errors. What the libraries print that
tells a wb user nothing (their FutureWarnings, loading and preprocessing bars) shows only with `wb -v`.

What goes through here, libraries' stdout included, has every URL's user:password@ and ?query removed: MLflow
prints "View run at http://user:PASS@host/..." (workbench.system.urls). Text from users (names, rows, outputs,
paths) is printed as text: never parsed as Rich markup (a `[/bold]` in a name), its control characters shown as
escapes (`\x1b`), so data cannot retitle the window, clear the screen or plant a link (`plain`, `visible`).
"""

import os
import re
import sys

from rich.console import Console
from rich.text import Text

from workbench.system.urls import redact_urls


class RedactedStderr:
    """sys.stderr as it is at each write (tests swap it), with the URLs in what is written redacted."""

    def write(self, text: str) -> int:
        return sys.stderr.write(redact_urls(text))

    def __getattr__(self, name):  # flush, isatty, fileno, encoding: the real stream's
        return getattr(sys.stderr, name)


STDERR = RedactedStderr()

# C0 controls but newline and tab, DEL and C1 (ESC starts ANSI/OSC sequences; CSI is also the one byte 0x9b)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """`text` with each control character shown as its escape (ESC as `\x1b`), so it prints as it reads."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def plain(value) -> Text:
    """A user's value (name, row, output, path) for a Rich table or print: text, never markup, controls visible."""
    return Text(visible(str(value)))


def markup_text(value) -> str:
    """A user's value inside a string that is Rich markup: escaped (rich.markup.escape), controls visible."""
    from rich.markup import escape

    return escape(visible(str(value)))
# Seconds between progress lines when stderr is not a terminal (WB_PROGRESS_INTERVAL overrides).
LOG_INTERVAL_S = 30.0

err = Console(file=STDERR, highlight=False)
errors = Console(file=STDERR, highlight=False)  # errors print even when quiet


def info(message: str) -> None:
    """A message on stderr, printed as text: the names it holds are not markup (workbench.system.console); a path
    or run id is never cut by a newline in a log."""
    err.print(visible(message), markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning worth a user's attention (also recorded where it matters, e.g. in a run's manifest)."""
    err.print(f"[yellow]warning:[/] {markup_text(message)}", soft_wrap=True)


def progress_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("WB_PROGRESS_INTERVAL", LOG_INTERVAL_S)))
    except ValueError:
        return LOG_INTERVAL_S


def is_quiet() -> bool:
    return os.environ.get("WB_QUIET") == "1"


def is_verbose() -> bool:
    return os.environ.get("WB_VERBOSE") == "1"


def configure(quiet: bool, verbose: bool = False) -> None:
    """Set how every library in this process reports progress; call before any of them is imported."""
    if quiet:
        os.environ["WB_QUIET"] = "1"  # children (the converter, GPTQModel) inherit it
    if verbose:
        os.environ["WB_VERBOSE"] = "1"
    else:
        _library_noise_off()
    # vLLM logs to stdout by default, from its engine and worker processes too: they inherit this.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    err.quiet = is_quiet()
    if is_quiet():
        os.environ.update(TQDM_DISABLE="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                          TRANSFORMERS_VERBOSITY="error", TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
                          VLLM_LOGGING_LEVEL="ERROR")
        import logging
        import warnings

        logging.basicConfig(level=logging.ERROR)
        logging.getLogger().setLevel(logging.ERROR)
        warnings.simplefilter("ignore")
    elif not err.is_terminal:
        # MAXINTERVAL too: tqdm's monitor thread otherwise forces a redraw every 10 s on a slow loop.
        os.environ.setdefault("TQDM_MININTERVAL", str(progress_interval()))
        os.environ.setdefault("TQDM_MAXINTERVAL", str(max(progress_interval(), 10.0)))


def _library_noise_off() -> None:
    """Bars of weights loaded and written (transformers reads the hub's switch) and of datasets' preprocessing
    maps, and libraries' FutureWarnings about their own next versions; a user's own setting of these wins.
    Training and generation progress still shows."""
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # child processes
    warnings.filterwarnings("ignore", category=FutureWarning)


def library_stdout_to_stderr():
    """Libraries print banners on stdout (GPTQModel's when peft imports it, TRL's, tqdm's): stdout is for wb's
    own output, --json's one object above all."""
    import contextlib

    return contextlib.redirect_stdout(STDERR)

"""Library exceptions that reach a command's edge, as the project's one-line errors.

Inputs are checked before any work (workbench.checkpoints.checks, the verbs' own checks); this is the net below
them, for what only shows while working (a full disk, a file that changes underneath) and for library errors
a check does not anticipate. Anything not recognised here is a bug in wb and keeps its traceback.
"""

import errno
import json
from contextlib import contextmanager

from workbench.errors import BadInput, EnvironmentProblem, WorkbenchError

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """A full disk, raised as an OSError or wrapped in a library's own error (safetensors' Rust I/O error)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in DISK_FULL
    return says_disk_full(str(exc))


def says_disk_full(text: str) -> bool:
    """A message (a library's, a child process's output) that reports a full disk."""
    return "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text


def no_space(where, needs_bytes: int | None = None) -> EnvironmentProblem:
    """The one error for a disk that fills while wb writes: the machine's problem (exit 4), not the input's."""
    needs = f"; it needs about {needs_bytes / 1e9:.2f} GB" if needs_bytes else ""
    return EnvironmentProblem(f"no space left writing '{where}'{needs}; free some space and run again")


@contextmanager
def disk_full_as(where, needs_bytes: int | None = None):
    """Inside, a full disk becomes no_space(where) (naming what was being written); anything else passes."""
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc):
            raise no_space(where, needs_bytes) from exc
        raise


def first_line(exc: BaseException) -> str:
    """An exception's message in one line: its first line, or its type's name when it has no message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def described(exc: BaseException) -> str:
    """'Type: first line': an unexpected exception named for a one-line report."""
    return f"{type(exc).__name__}: {first_line(exc)}"


def reported(exc: Exception) -> tuple[str, int]:
    """A failure reported where the work goes on (a sweep's unit, a matrix's member): its one-line error and
    the exit code it gives. wb's own errors and the library failures translate() knows keep theirs; anything
    else is named by its type, exit 4 like an environment problem (a runtime that broke), never 1, which a CI
    job reads as a failed gate."""
    known = exc if isinstance(exc, WorkbenchError) else translate(exc)
    return (first_line(known), known.exit_code) if known else (described(exc), EnvironmentProblem.exit_code)


def translate(exc: BaseException) -> WorkbenchError | None:
    """The project's error for `exc`, or None when it is not a known library failure."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return _os_error(exc)
    if isinstance(exc, UnicodeDecodeError):
        return BadInput(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")
    if isinstance(exc, json.JSONDecodeError):
        return BadInput(f"a file is not valid JSON ({exc.msg}, line {exc.lineno}, column {exc.colno})")
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if says_disk_full(str(exc)):  # a library's wrapped ENOSPC
        return EnvironmentProblem(f"no space left on the device being written ({text}); free some space and "
                                  "run again")
    if name == "SafetensorError":  # safetensors' Rust error: a header or file cut short
        return BadInput(f"a .safetensors file is damaged ({text}); re-save or re-download the checkpoint")
    if isinstance(exc, (ValueError, KeyError)) and any(
            n in text for n in ("model_type", "model type", "Unrecognized model", "does not recognize")):
        first = text.split(". ")[0]
        if "trust_remote_code" in str(exc):
            return BadInput(f"the checkpoint is its own code, which needs trust_remote_code; wb never runs a "
                            f"checkpoint's code ({first})")
        return BadInput(f"the checkpoint's config.json names a model transformers does not know ({first})")
    if isinstance(exc, RuntimeError) and "ignore_mismatched_sizes" in str(exc):  # transformers 5's refusal
        return BadInput("the checkpoint's weights do not have the shapes its config.json gives (transformers "
                        "refused the size mismatch); re-save the checkpoint or fix its config.json")
    if isinstance(exc, RuntimeError) and "size mismatch" in str(exc):
        first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), text)
        return BadInput(f"the adapter does not fit its base model: {first}")
    return None


def _os_error(exc: OSError) -> WorkbenchError:
    where = exc.filename or "a file"
    if exc.errno == errno.ENOSPC:
        return EnvironmentProblem(f"no space left on the device of {where}; free some space and run again")
    if exc.errno == errno.EDQUOT:
        return EnvironmentProblem(f"disk quota exceeded writing {where}; free some space and run again")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BadInput(f"{where}: permission denied")
    if exc.errno == errno.EROFS:
        return BadInput(f"{where}: read-only file system")
    if exc.errno == errno.EISDIR:
        return BadInput(f"{where}: is a directory, expected a file")
    if exc.errno == errno.ENOTDIR:
        return BadInput(f"{where}: a part of the path is a file, not a directory")
    if exc.errno == errno.ENOENT:
        return BadInput(f"{where}: no such file or directory")
    return EnvironmentProblem(f"{where}: {exc.strerror or exc}")

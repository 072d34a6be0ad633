"""Atomic file writes: a reader never sees half a file, a crash never leaves one."""

import json
import math
import os
import tempfile
from contextlib import contextmanager

_UMASK = os.umask(0)
os.umask(_UMASK)
from pathlib import Path
from typing import Any, Iterator

from workbench.errors import BadInput
from workbench.system.user_files import MAX_DOCUMENT_BYTES, load_json


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the final file gets the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a failed write() names no file; the message must (a full disk, above all)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strict_json(obj: Any, **dumps_args) -> str:
    """JSON as the standard has it: json.dumps writes NaN and infinities as bare NaN/Infinity, which other readers
    (jq, browsers, JSON.parse) refuse; here they become null. Where a value's absence needs a reason (a metric),
    the writer records it beside the null (Run.add_metric)."""
    return json.dumps(finite_or_null(obj), allow_nan=False, default=str, **dumps_args)


def finite_or_null(obj: Any) -> Any:
    """`obj` with every NaN or infinite float (in dicts, lists and tuples, at any depth) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, strict_json(obj, indent=2, sort_keys=False) + "\n")


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(strict_json(r, ensure_ascii=False) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_json_object(path: Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict:
    """A JSON file that must hold an object, read by the bounded loader (workbench.system.user_files); a one-line
    BadInput naming it otherwise."""
    value = load_json(path, max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise BadInput(f"{path}: expected a JSON object")
    return value


def staging_dir(target: Path) -> Path:
    """A fresh folder beside `target` to build into, then move into place with os.replace (same filesystem).
    Its name carries the pid (and start time) of the process building it, so the next staging beside the same
    target removes what a killed process left."""
    from workbench.system.processes import start_time

    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    prefix = f".{target.name}.partial-{os.getpid()}.{start_time(os.getpid()) or 0}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private
    return tmp


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove the staging folders beside `target` whose process has ended; returns what was removed."""
    import re
    import shutil

    from workbench.system.processes import alive

    pattern = re.compile(rf"^\.{re.escape(target.name)}\.partial-(\d+)\.(\d+)-")
    removed = []
    for entry in target.parent.glob(f".{target.name}.partial-*"):
        m = pattern.match(entry.name)
        if m and entry.is_dir() and not alive(int(m.group(1)), m.group(2) if m.group(2) != "0" else None):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _publish(staged: Path, target: Path, replace: bool, keep_existing: bool) -> None:
    """Move a finished build folder into place: `target` absent, an empty folder, or (replace) any folder; with
    keep_existing, a folder another process published meanwhile stays and this build is dropped."""
    import shutil

    if target.is_dir() and replace:
        shutil.rmtree(target)
    elif target.exists():
        if keep_existing and target.is_dir() and any(target.iterdir()):
            return
        target.rmdir()  # empty (callers check before any work): an OSError otherwise, never a silent merge
    try:
        os.replace(staged, target)
    except OSError:
        if not (keep_existing and target.is_dir() and any(target.iterdir())):  # not a concurrent build that won
            raise


_building: set[Path] = set()  # the build folders of this process's open staged_folder()s


@contextmanager
def staged_folder(target: Path, *, replace: bool = False, keep_existing: bool = False) -> Iterator[Path]:
    """Yields a folder path to build into (not yet created); on a clean exit it becomes `target`, and on any
    error, Ctrl-C included, it is removed and `target` is left as it was. `target` must be absent or an empty
    folder; with replace, a folder there is replaced whole (a cache being rebuilt); with keep_existing, one that
    another process published while this one built is kept (a cache two processes fill at once).

    The yielded folder's parent is private to this staging as well: scratch space for what is built but not
    published (a merged source, an intermediate f16 file), removed with it.

    Staging a `target` that is itself the build folder of an open staged_folder of this process builds in place:
    the outer one publishes it, once (the export pipeline verifies an exporter's files before publishing them)."""
    import shutil

    target = Path(target)
    if target.absolute() in _building:
        yield target
        return
    tmp = staging_dir(target)
    build = tmp / "out"
    _building.add(build.absolute())
    try:
        yield build
        _publish(build, target, replace, keep_existing)
    finally:
        _building.discard(build.absolute())
        shutil.rmtree(tmp, ignore_errors=True)

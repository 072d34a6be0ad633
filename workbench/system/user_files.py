"""Reading the files users give (suites, recipes, gates, sweep files, mergekit configs, JSON schemas, JSONL rows,
run.json read back): the one loader for their YAML and JSON, bounded so that no file can take unbounded time or
memory, and every refusal one BadInput naming the file (and line).

- Only regular files are opened: a FIFO would block the read forever and a device (/dev/zero) never ends, so both
  are refused by name from a stat() made before the open; a symlink loop is refused by name too.
- Sizes are capped: a whole YAML/JSON document, each JSONL line, a JSONL file.
- Nesting is capped (YAML while composing, JSON after parsing), below the depth at which Python's recursive parsers
  and everything that walks the value later (pydantic, json.dumps) would raise RecursionError.
- YAML aliases are counted while PyYAML composes the node graph: the nodes an alias stands for count as often as
  they are referred to, so a "billion laughs" anchor bomb is refused at its first few lines, before the constructor
  or anything downstream could expand it. A self-referring alias is refused as well.
"""

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import BadInput

MAX_DOCUMENT_BYTES = 16 << 20  # a YAML or JSON file: recipes, suites and schemas are kilobytes
MAX_MODEL_JSON_BYTES = 1 << 30  # a model folder's JSON: tokenizer.json runs to tens of MB
MAX_LINE_BYTES = 16 << 20  # one JSONL row
MAX_JSONL_BYTES = 4 << 30  # a JSONL file, all of whose rows are held in memory
MAX_DEPTH = 100  # nesting of mappings/lists, far above any real config or row
MAX_YAML_NODES = 100_000  # nodes of a YAML document with every alias expanded

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def resolved(path: str | os.PathLike) -> Path:
    """Path.resolve(), with a symlink loop a BadInput naming the path (pathlib raises RuntimeError for it)."""
    try:
        return Path(path).resolve()
    except RuntimeError:
        raise BadInput(f"{path}: a symlink loop") from None
    except OSError as exc:
        raise _os_refusal(Path(path), exc) from None


def _os_refusal(path: Path, exc: OSError) -> BadInput:
    import errno

    if exc.errno == errno.ENOENT:
        return BadInput(f"{path}: no such file")
    if exc.errno == errno.ELOOP:
        return BadInput(f"{path}: a symlink loop")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BadInput(f"{path}: permission denied")
    if exc.errno == errno.ENOTDIR:
        return BadInput(f"{path}: a part of the path is a file, not a folder")
    return BadInput(f"{path}: cannot be read ({exc.strerror or exc})")


def regular_file(path: str | os.PathLike, expected: str = "a file") -> Path:
    """`path` if it is a regular file (symlinks followed); a BadInput naming it otherwise: missing, a folder, a
    symlink loop, a FIFO, a device or a socket. Checked by stat, without opening the file."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _os_refusal(path, exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{path}: is a folder, expected {expected}")
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise BadInput(f"{path}: is {kind}, not a regular file (expected {expected})")
    return path


def _open(path: Path, expected: str, max_bytes: int):
    regular_file(path, expected)
    size = os.stat(path).st_size
    if size > max_bytes:
        raise BadInput(f"{path}: {size} bytes, more than the {_mib(max_bytes)} wb reads from "
                       f"{expected}")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise _os_refusal(path, exc) from None


def read_text(path: str | os.PathLike, expected: str = "a file", max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """A regular UTF-8 file of at most max_bytes (read no further, should it grow meanwhile)."""
    path = Path(path)
    with _open(path, expected, max_bytes) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadInput(f"{path}: larger than the {_mib(max_bytes)} wb reads from {expected}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise BadInput(f"{path}:{line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None


def text_lines(path: str | os.PathLike, expected: str = "a JSONL file") -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a regular UTF-8 file; a line that is not UTF-8 or longer than
    MAX_LINE_BYTES is a BadInput naming file:line."""
    path = Path(path)
    with _open(path, expected, MAX_JSONL_BYTES) as fh:
        lineno = 0
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise BadInput(f"{path}:{lineno}: a line longer than {_mib(MAX_LINE_BYTES)}")
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInput(f"{path}:{lineno}: not UTF-8 text (byte {exc.start} of the line); "
                               "save the file as UTF-8") from None


# ---- JSON ---------------------------------------------------------------------------------------------------

def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(text: str, where: str, *, with_line: bool = False) -> Any:
    """JSON text from `where` (a file, or file:line for a JSONL row), nested at most MAX_DEPTH deep."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f", line {exc.lineno}, column {exc.colno}" if with_line else ""
        raise BadInput(f"{where}: not valid JSON ({exc.msg}{at})") from None
    except RecursionError:
        raise BadInput(f"{where}: JSON nested deeper than {MAX_DEPTH} levels") from None
    if _deeper_than(value, MAX_DEPTH):
        raise BadInput(f"{where}: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def load_json(path: str | os.PathLike, expected: str = "a JSON file", max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """A regular JSON file, bounded in size and depth."""
    return parse_json(read_text(path, expected, max_bytes), str(path), with_line=True)


def json_lines(path: str | os.PathLike) -> Iterator[tuple[int, str, Any]]:
    """(line number, "file:line", value) for each non-blank line of a JSONL file."""
    for lineno, line in text_lines(path):
        if line.strip():
            where = f"{path}:{lineno}"
            yield lineno, where, parse_json(line, where)


# ---- YAML ---------------------------------------------------------------------------------------------------

class LimitExceeded(yaml.YAMLError):
    """A YAML document past one of the limits, found while composing (before any value is built)."""

    def __init__(self, problem: str, mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (pure Python, so its composer can be hooked) that counts what it composes."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0  # nodes so far, each alias counting the nodes it stands for
        self._anchored: dict[str, int] = {}  # anchor -> the expanded size of its node, once composed

    def _count(self, n: int, mark) -> None:
        self._expanded += n
        if self._expanded > MAX_YAML_NODES:
            raise LimitExceeded(f"more than {MAX_YAML_NODES} values once its aliases are expanded (an alias bomb?)",
                                mark)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self._anchored:
                raise LimitExceeded(f"alias *{event.anchor} refers to the node it is inside", event.start_mark)
            if event.anchor in self._anchored:
                self._count(self._anchored[event.anchor], event.start_mark)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise LimitExceeded(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        before = self._expanded
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._anchored[anchor] = self._expanded - before
        return node


def parse_yaml(text: str, path: str | os.PathLike) -> Any:
    """YAML text from file `path`, safe-loaded within the limits; a BadInput naming the file and line otherwise."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except LimitExceeded as exc:
        mark = exc.problem_mark
        raise BadInput(f"{path}:{mark.line + 1}: refused: {exc.problem}") from None
    except RecursionError:  # a nesting the limit above does not see (deep flow collections inside one scalar)
        raise BadInput(f"{path}: YAML nested too deep") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BadInput(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()


def load_yaml(path: str | os.PathLike, expected: str = "a YAML file") -> Any:
    """A regular YAML file, bounded in size, depth and alias expansion."""
    return parse_yaml(read_text(path, expected), path)

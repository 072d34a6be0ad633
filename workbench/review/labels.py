"""The human labels of a store: one append-only JSONL file (`<store>/reviews/labels.jsonl`), one line per label.

Reviewers label at once from several browser tabs and processes, so each label is one `write()` of one whole line
under an exclusive lock, then fsynced: a line is either all there or (after a kill mid-write) a torn last line,
which readers skip and count. Labels are never edited; a reviewer's newer label of the same item supersedes the
older one (`latest`).

A pairwise label is about runs `[A, B]` (A the first run picked: the baseline; B the candidate). The page shows them
as left/right in an order drawn per item (`sides`, seeded) and records both what was shown and what was chosen,
so position bias can be measured. A rubric label grades one run's answer on the judge scorer's scale.
"""

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import BadInput
from workbench.store.files import strict_json
from workbench.store.runs import Run, Store, now

CHOICES = ("left", "right", "tie", "both_bad")
KINDS = ("pairwise", "rubric")


def labels_path(store: Store) -> Path:
    return store.root / "reviews" / "labels.jsonl"


@dataclass(frozen=True)
class ReadLabels:
    labels: list[dict]
    torn: int  # lines that did not parse (a write cut short by a kill): skipped


def preferred(label: dict) -> str:
    """A pairwise label's verdict in run terms: 'A', 'B', 'tie' or 'both_bad'."""
    choice = label["choice"]
    if choice in ("tie", "both_bad"):
        return choice
    shown = label["shown"][0 if choice == "left" else 1]
    return "A" if shown == label["runs"][0] else "B"


def sides(seed: int, item: str, runs: list[str]) -> list[str]:
    """The left/right order the page shows runs [A, B] in for `item`: drawn per item from `seed`, so a reload or
    another reviewer with the same seed sees the same order, and about half the items show B on the left."""
    digest = hashlib.sha256(f"{seed}\0{item}\0{runs[0]}\0{runs[1]}".encode()).digest()
    return list(runs) if digest[0] % 2 == 0 else [runs[1], runs[0]]


def check_pair(a: Run, b: Run) -> None:
    """Two runs can be reviewed side by side only when they are evals of one suite."""
    for run in (a, b):
        if run.manifest.get("kind") not in (None, "eval"):
            raise BadInput(f"run {run.run_id}: is a {run.manifest.get('kind')} run; review compares eval runs")
    if a.run_id == b.run_id:
        raise BadInput(f"run {a.run_id}: review needs two different runs")
    if a.manifest.get("suite") != b.manifest.get("suite"):
        raise BadInput(f"runs {a.run_id} and {b.run_id}: are evals of different suites "
                       f"({a.manifest.get('suite')!r} and {b.manifest.get('suite')!r}); review runs of one suite")


def check_item(run: Run, task: str, item: str) -> dict:
    """The run's sample `item` of `task`, or BadInput naming what is missing."""
    rows = run.samples(task)
    if not rows:
        raise BadInput(f"run {run.run_id}: has no samples for task {task!r}")
    for row in rows:
        if str(row.get("id")) == item:
            return row
    raise BadInput(f"run {run.run_id}: task {task!r} has no item {item!r}")


def make_label(*, reviewer: str, kind: str, suite: str, task: str, item: str, runs: list[str],
               shown: list[str] | None = None, choice: str | None = None, score: int | None = None,
               scale: list[int] | None = None, note: str = "", seed: int | None = None) -> dict:
    """A label record, checked for shape (not yet against the runs: see check_pair/check_item)."""
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise BadInput("reviewer: give a name")
    if kind not in KINDS:
        raise BadInput(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    record = {"label_id": uuid.uuid4().hex, "at": now(), "reviewer": reviewer, "kind": kind, "suite": suite,
              "task": task, "item": str(item), "runs": list(runs), "note": note}
    if kind == "pairwise":
        if len(runs) != 2 or sorted(shown or []) != sorted(runs):
            raise BadInput("a pairwise label needs runs [A, B] and the order they were shown in")
        if choice not in CHOICES:
            raise BadInput(f"choice {choice!r}: expected one of {', '.join(CHOICES)}")
        record.update(shown=list(shown), choice=choice, seed=seed)
        record["preferred"] = preferred(record)
    else:
        if len(runs) != 1 or score is None or scale is None:
            raise BadInput("a rubric label needs one run, a score and the scale")
        lo, hi = scale
        if isinstance(score, bool) or not isinstance(score, int) or not lo <= score <= hi:
            raise BadInput(f"score {score!r}: expected an integer from {lo} to {hi}")
        record.update(score=score, scale=[lo, hi])
    return record


def append_label(store: Store, record: dict) -> dict:
    """Appends one label (a whole line, one write, under an exclusive lock, fsynced). Returns it."""
    path = labels_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (strict_json(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _heal_torn_tail(fd)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    return record


def _heal_torn_tail(fd: int) -> None:
    """A kill mid-write can leave a last line without its newline; end it, so the next label starts a line."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


def read_labels(store: Store) -> ReadLabels:
    path = labels_path(store)
    if not path.exists():
        return ReadLabels([], 0)
    labels, torn = [], 0
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                value = json.loads(raw)
            except ValueError:
                torn += 1
                continue
            if isinstance(value, dict) and value.get("kind") in KINDS:
                labels.append(value)
            else:
                torn += 1
    return ReadLabels(labels, torn)


def select(labels: Iterable[dict], *, kind: str | None = None, runs: list[str] | None = None,
           task: str | None = None, reviewer: str | None = None) -> list[dict]:
    """Labels of one kind, about exactly these runs ([A, B] for pairwise, [R] for rubric), of one task/reviewer."""
    return [lb for lb in labels
            if (kind is None or lb["kind"] == kind) and (runs is None or lb["runs"] == list(runs))
            and (task is None or lb["task"] == task) and (reviewer is None or lb["reviewer"] == reviewer)]


def latest(labels: Iterable[dict]) -> list[dict]:
    """One label per (reviewer, kind, runs, task, item): the newest (file order) wins."""
    kept: dict[tuple, dict] = {}
    for lb in labels:
        kept[(lb["reviewer"], lb["kind"], tuple(lb["runs"]), lb["task"], lb["item"])] = lb
    return list(kept.values())

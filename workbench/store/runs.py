"""Run folders: <store>/runs/<run-id>/{run.json, results.json, samples/*.jsonl}.

A run's status goes started -> ok | error. Validation happens before a run is opened, so bad input
leaves nothing in the store. index.db is derived from the folders: a damaged one is rebuilt from them (with a
warning), and a store that cannot be written (a read-only mount) is listed from the folders themselves. A run
records the process writing it (`owner`): a `started` run whose process has ended (killed, or its machine lost
power) reads as `interrupted`. Every URL in a manifest is recorded without credentials or query string (a suite's
judge.base_url, an endpoint checkpoint, the command line, an error message), in run.json, the index and whatever
reads the manifest afterwards (MLflow params).
"""

import datetime as dt
import json
import math
import os
import secrets
import sqlite3
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from workbench.errors import BadInput
from workbench.store import index
from workbench.store.files import read_json_object, staged_folder, write_json_atomic, write_jsonl_atomic
from workbench.system.faultpoints import pause_point
from workbench.system.processes import identity, is_dead
from workbench.system.urls import redact_record
from workbench.system.user_files import json_lines

SCHEMA_VERSION = 1
INTERRUPTED = "interrupted"  # never written: how a started run whose process is gone reads


def live_status(manifest: dict) -> dict:
    """The manifest as it reads now: `interrupted` for a started run whose process has ended."""
    if manifest.get("status") == "started" and is_dead(manifest.get("owner")):
        return manifest | {"status": INTERRUPTED}
    return manifest


def now() -> str:
    """UTC, to the millisecond: runs made in the same second still sort in the order they were made."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_run_id(kind: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{kind}-{secrets.token_hex(3)}"


@dataclass
class Run:
    """A run folder being written or read."""

    path: Path
    manifest: dict
    metrics: list[dict] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    def add_metric(self, task: str, metric: str, value: float | None, *, stderr: float | None = None,
                   n: int | None = None, higher_is_better: bool | None = True, **extra) -> None:
        row = {"task": task, "metric": metric, "value": value, "stderr": stderr, "n": n,
               "higher_is_better": higher_is_better, **extra}
        for key in ("value", "stderr"):  # JSON has no NaN or infinity: null, and the reason beside it
            if isinstance(row[key], float) and not math.isfinite(row[key]):
                row[key], row[f"{key}_note"] = None, f"not a finite number ({row[key]})"
        self.metrics.append(row)

    def write_samples(self, name: str, rows: list[dict]) -> None:
        write_jsonl_atomic(self.path / "samples" / f"{safe_name(name)}.jsonl", rows)

    def samples(self, name: str) -> list[dict]:
        path = self.path / "samples" / f"{safe_name(name)}.jsonl"
        return [row for _, _, row in json_lines(path)] if path.exists() else []

    def sample_files(self) -> list[str]:
        folder = self.path / "samples"
        return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []

    def metric(self, task: str, metric: str) -> dict | None:
        return next((m for m in self.metrics if m["task"] == task and m["metric"] == metric), None)


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    @classmethod
    def open(cls, root: "Store | str | os.PathLike | None" = None, *, writing: bool = True) -> "Store":
        """The store at `root` (default: $WB_STORE, else $WB_HOME/store), checked to be usable before any work:
        writable for a run to be recorded in it, a folder if it exists for one that is only read (writing=False)."""
        from workbench.system.home import store_dir
        from workbench.system.output_paths import check_store_folder, check_store_writable

        path = root.root if isinstance(root, Store) else store_dir(root)
        if writing:
            check_store_writable(path)
        else:
            check_store_folder(path)
        return root if isinstance(root, Store) else cls(path)

    @property
    def index_path(self) -> Path:
        return self.root / "index.db"

    def connect(self):
        """The index, rebuilt from the run folders first when it is damaged (not SQLite, or cut short)."""
        try:
            return index.connect(self.index_path)
        except sqlite3.DatabaseError as exc:
            if not index.is_damaged(exc):
                raise
            self._rebuild_damaged(exc)
        return index.connect(self.index_path)

    def _rebuild_damaged(self, exc: sqlite3.DatabaseError) -> None:
        from workbench.system.console import warn

        count = self.rebuild_index()
        warn(f"{self.index_path} was damaged ({exc}); rebuilt it from the run folders ({count} run{'s' * (count != 1)})")

    @contextmanager
    def open_run(self, kind: str, manifest: dict) -> Iterator[Run]:
        """Create a run folder (status started), yield it, and close it ok or error."""
        run_id = new_run_id(kind)
        path = self.runs_dir / run_id
        path.mkdir(parents=True)
        full = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "kind": kind, "status": "started",
                "created_at": now(), "owner": identity(), **manifest}
        run = Run(path=path, manifest=full)
        self._save(run)
        pause_point("run-opened")
        try:
            yield run
        except BaseException as exc:
            run.manifest["status"] = "error"
            run.manifest["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            run.manifest["finished_at"] = now()
            self._save(run)
            raise
        run.manifest["status"] = "ok"
        run.manifest["finished_at"] = now()
        self._save(run)

    def adopt_run(self, run_id: str, files: dict[str, bytes]) -> bool:
        """Land a finished run recorded in another store (a sweep worker's scratch one) under its own id: the
        folder appears whole or not at all, then it is indexed. False when this store has that run already."""
        if safe_name(run_id) != run_id:
            raise BadInput(f"run id '{run_id}': not a run folder name")
        target = self.runs_dir / run_id
        if target.exists():
            return False
        with staged_folder(target) as tmp:
            for rel, data in files.items():
                dest = (tmp / rel).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise BadInput(f"run {run_id}: file '{rel}' lies outside the run folder")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
        run = self.load(run_id, as_recorded=True)
        conn = self.connect()
        try:
            index.upsert_run(conn, run.manifest, run.metrics)
        finally:
            conn.close()
        return True

    def run_files(self, run_id: str) -> dict[str, bytes]:
        """Every file of a run folder, by path relative to it: what adopt_run lands in another store."""
        folder = self.runs_dir / run_id
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    def annotate(self, run: Run, key: str, value) -> None:
        """Add one record to a closed run's manifest (e.g. where a tracker logged it)."""
        run.manifest[key] = value
        self._save(run)

    def _save(self, run: Run) -> None:
        redact_record(run.manifest)  # in place: the manifest in memory is the one on disk
        write_json_atomic(run.path / "results.json", {"schema_version": SCHEMA_VERSION, "metrics": run.metrics})
        write_json_atomic(run.path / "run.json", run.manifest)
        conn = self.connect()
        try:
            index.upsert_run(conn, run.manifest, run.metrics)
        finally:
            conn.close()

    def load(self, run_id: str, *, as_recorded: bool = False) -> Run:
        """The run; a dead started run reads as interrupted unless as_recorded (what run.json says)."""
        path = self.runs_dir / run_id
        manifest = read_json_object(path / "run.json")
        manifest = manifest if as_recorded else live_status(manifest)
        results_path = path / "results.json"
        metrics = read_json_object(results_path).get("metrics") if results_path.exists() else []
        if not isinstance(metrics, list):
            raise BadInput(f"{results_path}: 'metrics' is not a list")
        return Run(path=path, manifest=manifest, metrics=metrics)

    def resolve(self, ref: str) -> Run:
        """A run id, a unique prefix of one, or 'latest'."""
        ids = self.run_ids()
        if ref == "latest" and ids:
            newest = self.list_runs(limit=1)  # by creation time: ids made in the same second sort at random
            return self.load(newest[0]["run_id"] if newest else ids[-1])
        if ref in ids:
            return self.load(ref)
        matches = [i for i in ids if i.startswith(ref) or i.endswith(ref)]
        if len(matches) == 1:
            return self.load(matches[0])
        if not matches:
            raise BadInput(f"run '{ref}': no such run in store {self.root}")
        raise BadInput(f"run '{ref}' is ambiguous in store {self.root}: {', '.join(matches[:5])}")

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / "run.json").exists())

    def list_runs(self, kind: str | None = None, limit: int | None = None, offset: int = 0) -> list[dict]:
        """Manifests, newest first: from the index, or from the run folders where the store cannot be written
        (SQLite reads a WAL index only where it can write beside it)."""
        if not os.access(self.root, os.W_OK):
            return self._list_folders(kind, limit, offset)
        if not self.index_path.exists():
            return []
        try:
            return self._list_index(kind, limit, offset)
        except sqlite3.DatabaseError as exc:
            if not index.is_damaged(exc):
                raise
            self._rebuild_damaged(exc)
        return self._list_index(kind, limit, offset)

    def _list_index(self, kind: str | None, limit: int | None, offset: int) -> list[dict]:
        conn = self.connect()
        try:
            sql = "SELECT manifest FROM runs"
            args: list = []
            if kind:
                sql += " WHERE kind=?"
                args.append(kind)
            sql += " ORDER BY created_at DESC, run_id DESC"
            if limit is not None:
                sql += " LIMIT ? OFFSET ?"
                args += [limit, offset]
            return [live_status(json.loads(row[0])) for row in conn.execute(sql, args)]
        finally:
            conn.close()

    def _list_folders(self, kind: str | None, limit: int | None, offset: int) -> list[dict]:
        manifests = [self.load(run_id).manifest for run_id in self.run_ids()]
        manifests = [m for m in manifests if not kind or m.get("kind") == kind]
        manifests.sort(key=lambda m: (str(m.get("created_at")), str(m.get("run_id"))), reverse=True)
        return manifests[offset:None if limit is None else offset + limit]

    def rebuild_index(self) -> int:
        """Recreate index.db from the run folders; returns the number of runs indexed. Every run.json is read
        first, so a damaged one is refused (naming it) before anything is written."""
        runs = [self.load(run_id, as_recorded=True) for run_id in self.run_ids()]
        tmp = self.root / f".index.{os.getpid()}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        conn = index.connect(tmp)
        count = 0
        try:
            for run in runs:
                index.upsert_run(conn, run.manifest, run.metrics)
                count += 1
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, self.index_path)
        return count

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from workbench.store import Store


def _write_run(store, kind="eval", value=0.5, task="t"):
    with store.open_run(kind, {"checkpoint": {"name": "ck", "sha": "abc"}, "suite": "s"}) as run:
        run.add_metric(task, "exact", value, stderr=0.1, n=10)
        run.write_samples(task, [{"id": "1", "output": "x", "scores": {"exact": value}}])
    return run


def test_run_folder_has_manifest_results_samples(tmp_path):
    store = Store(tmp_path)
    run = _write_run(store)
    folder = tmp_path / "runs" / run.run_id
    manifest = json.loads((folder / "run.json").read_text())
    assert manifest["status"] == "ok" and manifest["schema_version"] == 1 and manifest["finished_at"]
    assert json.loads((folder / "results.json").read_text())["metrics"][0]["value"] == 0.5
    assert (folder / "samples" / "t.jsonl").read_text().strip().startswith('{"id": "1"')
    assert not list(folder.rglob("*.tmp"))


def test_failed_run_is_marked_error(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError):
        with store.open_run("eval", {}) as run:
            raise RuntimeError("boom")
    loaded = store.load(run.run_id)
    assert loaded.manifest["status"] == "error" and "boom" in loaded.manifest["error"]


def test_index_lists_newest_first_and_rebuilds_from_folders(tmp_path):
    store = Store(tmp_path)
    ids = [_write_run(store, value=v).run_id for v in (0.1, 0.2, 0.3)]  # within a second: ids sort at random
    assert [m["run_id"] for m in store.list_runs()] == ids[::-1]  # the order they were made in, newest first
    assert store.resolve("latest").run_id == ids[-1]
    store.index_path.unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"index.db{suffix}").unlink(missing_ok=True)
    assert store.list_runs() == []
    assert store.rebuild_index() == 3
    conn = sqlite3.connect(store.index_path)
    assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 3
    assert [r[0] for r in conn.execute("SELECT name FROM migrations")] == ["0001_runs_and_metrics"]


def test_resolve_by_prefix_suffix_and_latest(tmp_path):
    store = Store(tmp_path)
    run = _write_run(store)
    assert store.resolve(run.run_id[-6:]).run_id == run.run_id
    assert store.resolve("latest").run_id == run.run_id
    with pytest.raises(Exception, match="no such run"):
        store.resolve("nope")


def _writer(root, n):
    store = Store(root)
    for i in range(n):
        _write_run(store, value=i / n)


def test_several_processes_write_one_store(tmp_path):
    procs = [multiprocessing.Process(target=_writer, args=(tmp_path, 5)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(tmp_path)
    assert len(store.list_runs()) == 15 == len(store.run_ids())


def test_weights_sha_is_remembered_until_a_weight_file_changes(tmp_path, monkeypatch):
    import hashlib
    import os

    from workbench.checkpoints.checkpoint import SHA_CACHE_MIN_BYTES, weights_sha

    monkeypatch.setenv("WB_HOME", str(tmp_path / "home"))
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"a" * SHA_CACHE_MIN_BYTES)
    (model / "config.json").write_text("{}")

    def expected() -> str:
        return hashlib.sha256(b"model.safetensors" + weights.read_bytes()).hexdigest()

    first = weights_sha(model)
    assert first == expected()
    [entry] = (tmp_path / "home" / "weights-sha").iterdir()
    assert entry.read_text().strip() == first
    entry.write_text("0" * 64)  # proves the second call reads the remembered value instead of hashing
    assert weights_sha(model) == "0" * 64

    weights.write_bytes(b"b" * SHA_CACHE_MIN_BYTES)  # same size, new content and modification time
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert weights_sha(model) == expected() != first
    small = tmp_path / "small.gguf"
    small.write_bytes(b"x")
    assert weights_sha(small) == hashlib.sha256(b"small.gguf" + b"x").hexdigest()
    assert len(list((tmp_path / "home" / "weights-sha").iterdir())) == 2  # small files are not remembered


def test_staged_folder_publishes_once_even_when_staged_again_inside(tmp_path, monkeypatch):
    """An exporter stages its output; run inside the export pipeline's staging of that folder it builds in place,
    so there is one staging folder and one publish (relative paths included)."""
    from workbench.store.files import staged_folder

    monkeypatch.chdir(tmp_path)
    with staged_folder(Path("out")) as build:
        with staged_folder(build) as inner:
            assert inner == build
            inner.mkdir()
            (inner / "model.gguf").write_text("x")
        assert not Path("out").exists() and len(list(tmp_path.glob(".out.partial-*"))) == 1
    assert (tmp_path / "out" / "model.gguf").read_text() == "x" and not list(tmp_path.glob(".out.partial-*"))


def test_staged_folder_leaves_nothing_on_error_and_replaces_only_when_asked(tmp_path):
    from workbench.store.files import staged_folder

    target = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        with staged_folder(target) as build:
            build.mkdir()
            (build / "half").write_text("x")
            raise KeyboardInterrupt
    assert not target.exists() and not list(tmp_path.glob(".model.partial-*"))
    target.mkdir()
    (target / "old").write_text("stale")
    with pytest.raises(OSError):  # a folder with files in it is never merged into
        with staged_folder(target) as build:
            build.mkdir()
    assert (target / "old").exists() and not list(tmp_path.glob(".model.partial-*"))
    with staged_folder(target, replace=True) as build:
        build.mkdir()
        (build / "new").write_text("fresh")
    assert sorted(p.name for p in target.iterdir()) == ["new"]

"""Hostile input at wb's edges (issue 30): a config.json that disagrees with its weights, a --ray address that is
malformed or not Ray, a garbage or read-only index.db, a disk filling during GGUF export, an extra that cannot be
imported, a child process that hangs. Each case meets hostile_support's contract where it is refused."""

import json

import pytest
from hostile_support import check_case, workspace  # noqa: F401  (fixtures)


def _config_disagreeing(ws, g):
    """The tiny Llama with `hidden_size: 12` in its config.json and weights of hidden size 64."""
    config = json.loads((g("tiny_model_dir") / "config.json").read_text())
    return ws.variant(g("tiny_model_dir"), "disagrees", config__json=json.dumps({**config, "hidden_size": 12}))


_MISMATCH = ("disagrees/config.json", "does not match the weights", "model.embed_tokens.weight", "[49152, 64]")

CONFIG_CASES = {
    "eval-config-disagrees-with-weights": (lambda ws, g: ["eval", _config_disagreeing(ws, g), "--suite",
                                                          ws.suite()], 3, _MISMATCH),
    "export-config-disagrees-with-weights": (lambda ws, g: ["export", _config_disagreeing(ws, g), "-o",
                                                            ws.root / "out"], 3, _MISMATCH),
    "train-base-config-disagrees-with-weights": (lambda ws, g: ["train", ws.recipe(base=str(_config_disagreeing(
        ws, g))), "-o", ws.root / "out"], 3, _MISMATCH),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_that_disagrees_with_its_weights_is_refused_before_a_run(name, workspace, request, capsys):
    check_case(CONFIG_CASES[name], workspace, request, capsys)


# ---- --ray: a malformed address, a live port that is not Ray ----------------------------------------------------

@pytest.fixture(scope="module")
def not_ray():
    """Two live loopback ports that are not Ray: a socket server that accepts and says nothing, an HTTP server."""
    import socket
    import threading
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    silent = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.extend(iter(lambda: silent.accept()[0], None)), daemon=True).start()
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the server is in the test's process: its log is not wb's stderr
            pass

    http = HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield {"silent": f"127.0.0.1:{silent.getsockname()[1]}", "http": f"127.0.0.1:{http.server_address[1]}"}
    http.shutdown()
    http.server_close()
    for conn in held:
        conn.close()
    silent.close()


def _sweep(ws, g, address: str):
    body = {"checkpoints": [str(g("tiny_model_dir"))], "suites": [str(ws.suite())]}
    return ["sweep", ws.file("sweep.yaml", json.dumps(body)), "--ray", address]


RAY_CASES = {
    "ray-address-malformed": (lambda ws, g: _sweep(ws, g, "http://x y:zz"), 3, ("--ray http://x y:zz",
                                                                                "expected host:port")),
    "ray-address-no-port": (lambda ws, g: _sweep(ws, g, "127.0.0.1"), 3, ("--ray 127.0.0.1", "expected host:port")),
    "ray-port-silent": (lambda ws, g: _sweep(ws, g, g("not_ray")["silent"]), 4,
                        (lambda ws: ws.silent, "does not answer as a Ray cluster", "no answer in 10 s")),
    "ray-port-http": (lambda ws, g: _sweep(ws, g, g("not_ray")["http"]), 4,
                      (lambda ws: ws.http, "does not answer as a Ray cluster", "not gRPC")),
    "ray-client-port-silent": (lambda ws, g: _sweep(ws, g, "ray://" + g("not_ray")["silent"]), 4,
                               (lambda ws: ws.silent, "does not answer as a Ray Client server")),
}


@pytest.mark.parametrize("name", sorted(RAY_CASES))
def test_ray_address_that_is_malformed_or_not_ray_fails_in_seconds(name, workspace, request, capsys, not_ray):
    pytest.importorskip("ray", reason="needs the sweep extra (ray)")
    workspace.silent, workspace.http = not_ray["silent"], not_ray["http"]
    check_case(RAY_CASES[name], workspace, request, capsys)  # it ends: ray.init retried on such a port for minutes


@pytest.mark.parametrize("kind", ["silent", "http"])
def test_the_ray_handshake_gives_up_within_its_deadline(kind, not_ray):
    """The check alone, timed without the sweep's own checks before it (loading suites and checkpoints)."""
    import time

    pytest.importorskip("ray", reason="needs the sweep extra (ray)")
    from workbench.errors import EnvironmentProblem
    from workbench.sweep.ray_cluster import HANDSHAKE_TIMEOUT_S, connect

    started = time.monotonic()
    with pytest.raises(EnvironmentProblem, match="does not answer as a Ray cluster"):
        connect(not_ray[kind])
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT_S + 5


# ---- the store: a damaged index.db, a read-only store ----------------------------------------------------------

def _store_with_a_run(ws) -> str:
    """A store holding one finished eval run, as an earlier command would have left it."""
    from workbench.store import Store

    with Store(ws.store).open_run("eval", {"command": "wb eval", "suite": "tiny"}) as run:
        run.add_metric("say", "exact", 1.0)
    return run.run_id


@pytest.mark.parametrize("damage", ["random-bytes", "truncated-sqlite"])
def test_runs_on_a_damaged_index_rebuilds_it_from_the_run_folders(damage, workspace, capsys):
    import os
    import sqlite3

    from hostile_support import run_cli, snapshot

    run_id = _store_with_a_run(workspace)
    index_db = workspace.store / "index.db"
    good = index_db.read_bytes()
    index_db.write_bytes(os.urandom(3000) if damage == "random-bytes" else good[: len(good) // 2])
    before = snapshot(workspace.root)
    res = run_cli(["runs", "--json"], capsys)
    assert res.code == 0, res.stderr
    assert [r["run_id"] for r in json.loads(res.stdout)["runs"]] == [run_id]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(index_db) in lines[0] and "rebuilt it from the run folders (1 run)" in lines[0]
    assert "Traceback" not in res.stderr
    after = snapshot(workspace.root)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= {"store", "store/index.db"}, changed  # the index replaced in place, nothing else
    with sqlite3.connect(index_db) as conn:
        assert [r[0] for r in conn.execute("SELECT run_id FROM runs")] == [run_id]
    res = run_cli(["runs", "--json"], capsys)  # rebuilt once: the next listing says nothing
    assert res.code == 0 and res.stderr == "" and run_id in res.stdout


def test_runs_on_a_read_only_store_lists_its_runs(workspace, capsys, monkeypatch):
    import subprocess

    from hostile_support import SmallDisk, copy_tree, run_cli, snapshot

    from workbench.cli.output import out

    monkeypatch.setattr(out, "width", 400)  # the run id whole in the table, however long the tmp paths are

    run_id = _store_with_a_run(workspace)
    mount = SmallDisk(workspace.root / "ro-store", "8m")
    try:
        store = copy_tree(workspace.store, mount.path / "store")
        subprocess.run(["mount", "-o", "remount,ro", str(mount.path)], check=True)
        before = snapshot(workspace.root)
        for argv in (["runs", "--store", store], ["runs", "--store", store, "--json", "--kind", "eval"]):
            res = run_cli(argv, capsys)
            assert res.code == 0 and res.stderr == "", res.stderr
            assert run_id in res.stdout
        assert snapshot(workspace.root) == before
    finally:
        mount.close()


# ---- a disk that fills during GGUF export: exit 4 naming -o, as wb merge ----------------------------------------

@pytest.mark.parametrize("stage, size, quant", [("converter", "2m", "q4_k_m"), ("quantizer", "9m", "q8_0")])
def test_a_disk_filling_during_gguf_export_names_the_output(stage, size, quant, llama_tools, workspace, tiny_model_dir,
                                                            capsys, monkeypatch):
    """A real full disk (a tmpfs) holds -o: llama.cpp's converter (a child process, whose own report of the full
    disk is lost with its log on that disk) fails writing the 6.4 MB f16 file into 2 MiB; in 9 MiB the f16 fits
    and llama_model_quantize fails writing the q8_0 file."""
    pytest.importorskip("llama_cpp", reason="needs the gguf extra (llama-cpp-python)")
    from hostile_support import SmallDisk, run_cli, snapshot

    monkeypatch.setenv("WB_LLAMA_CPP_DIR", str(llama_tools.root))  # the session's tools, not extracted again
    disk = SmallDisk(workspace.root / "disk", size)
    try:
        out = disk.path / "out"
        before = snapshot(workspace.root)
        res = run_cli(["export", tiny_model_dir, "-q", quant, "-o", out], capsys)
        assert res.code == 4, res.stderr
        assert "Traceback" not in res.stderr and res.stdout == ""
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert lines[-1] == f"error: no space left writing '{out}'; free some space and run again", lines[-1]
        assert not [line for line in lines[:-1] if "error" in line.lower()], lines  # the rest: progress lines
        if stage == "quantizer":
            assert any(line.startswith("quantize q8_0") for line in lines), lines
        assert list(disk.path.iterdir()) == []  # nothing published, the staging folder removed
        after = snapshot(workspace.root)
        new = {k for k in set(after) - set(before) if not k.startswith("store")}
        assert new == set(), new  # no kept log under WB_HOME, nothing in the temporary folder
        runs = [json.loads(p.read_text()) for p in workspace.store.glob("runs/*/run.json")]
        assert [(r["kind"], r["status"]) for r in runs] == [("export", "error")]
    finally:
        disk.close()


# ---- a stuck child process: stopped after a silence, with one line ----------------------------------------------

def test_a_tool_that_goes_silent_is_stopped_with_one_line(workspace):
    """run_logged (llama.cpp's converters) stops a child that prints nothing for stall_s seconds: a real child
    that says one line and hangs. One that keeps talking runs past stall_s and is not stopped."""
    import sys
    import time
    from pathlib import Path

    from workbench.errors import EnvironmentProblem
    from workbench.runtimes.llamacpp.tools import run_logged

    hang = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(600)"]
    log = workspace.inputs / "tool.log"
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem) as raised:
        run_logged(hang, {}, log, what="the stuck tool", stall_s=2)
    assert time.monotonic() - started < 15
    message = str(raised.value)
    assert "\n" not in message and message.startswith("the stuck tool failed: printed nothing for 2 s and was stopped")
    kept = message.rsplit("full log: ", 1)[1].rstrip(")")
    assert kept.startswith(str(workspace.home / "logs")) and Path(kept).read_text() == "loading\n"

    talking = [sys.executable, "-c", "import time\nfor i in range(8): print(i, flush=True); time.sleep(0.5)"]
    run_logged(talking, {}, log, what="the slow tool", stall_s=2)
    assert log.read_text().split() == [str(i) for i in range(8)]


# ---- wb doctor: an extra that is installed but cannot be imported ------------------------------------------------

SHADOWED = {"ray": "sweep", "mergekit": "merge", "streamlit": "dashboard", "llama_cpp": "gguf", "mlflow": "track"}


def test_doctor_reports_an_extra_that_fails_to_import_as_broken(tmp_path):
    """A real `wb doctor --json` with a folder first on PYTHONPATH whose ray/, mergekit/, ... raise on import: each
    of those extras is reported not ok, broken with the error, never 'missing' (its pip line would not help)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    shadow = tmp_path / "shadow"
    for module in SHADOWED:
        (shadow / module).mkdir(parents=True)
        (shadow / module / "__init__.py").write_text(f"raise RuntimeError('{module} is broken on purpose')\n")
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(repo)]), "WB_STORE": str(tmp_path / "s"),
           "COLUMNS": "400"}  # each reason on one line of the table
    for argv in (["--json"], []):
        res = subprocess.run([sys.executable, "-m", "workbench", "doctor", *argv], capture_output=True, text=True,
                             env=env, timeout=600, check=False)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        if argv:
            report = json.loads(res.stdout)
            for module, extra in SHADOWED.items():
                assert report["extras"][extra] is False, extra
                assert report["extra_problems"][extra][module] == (
                    f"broken: RuntimeError: {module} is broken on purpose")
            assert report["extras"]["train"] is True and "train" not in report["extra_problems"]
        else:
            assert "ray broken: RuntimeError: ray is broken on purpose" in res.stdout


def test_import_status_survives_an_import_that_crashes_or_hangs(tmp_path, monkeypatch):
    """A module that kills its interpreter or never finishes importing is reported broken, and the modules after
    it are still checked (a fresh child goes on)."""
    from workbench.system.extras import import_status

    (tmp_path / "crashes.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    (tmp_path / "hangs.py").write_text("import time\ntime.sleep(600)\n")
    (tmp_path / "fine.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    status = import_status(["crashes", "fine", "hangs", "json", "no_such_module_here"], timeout_s=5)
    assert status == {"crashes": "broken: the interpreter ended with status -9 while importing it", "fine": "ok",
                      "hangs": "broken: importing it took over 5 s", "json": "ok", "no_such_module_here": "missing"}

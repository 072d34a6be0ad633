"""Faults with real processes and real signals: `wb` is stopped at a named point (WB_PAUSE_AT, see
workbench.system.faultpoints) and killed there with SIGKILL, SIGTERM or SIGINT. What must hold: nothing published before
it is verified, no child outliving wb, dead runs reading `interrupted`, a dead process's staging folders removed
by the next run, a full disk leaving the store consistent, and `--json` printing exactly one object with the
user's HF_HOME untouched."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_support import SmallDisk, tiny_adapter_dir  # noqa: F401  (fixture)


def _env(tmp_path: Path, **extra) -> dict:
    env = {**os.environ, "WB_STORE": str(tmp_path / "store"), "WB_PAUSE_MARKER": str(tmp_path / "paused")}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def _start(args: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workbench", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_paused(proc: subprocess.Popen, marker: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"wb exited {proc.returncode} before the pause point: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("wb did not reach the pause point")
        time.sleep(0.1)
    assert int(marker.read_text()) == proc.pid


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def _suite(tmp_path: Path, n: int = 2, reference: str = "x", extra: str = "") -> Path:
    (tmp_path / "items.jsonl").write_text("".join(
        json.dumps({"id": str(i), "prompt": f"Say {i}", "reference": reference}) + "\n" for i in range(n)))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: tiny\ntasks:\n  - name: say\n    data: items.jsonl\n"
                     f"    generation: {{max_new_tokens: 2}}\n    scorers: [{{type: exact}}{extra}]\n")
    return suite


def _runs(tmp_path: Path) -> list[dict]:
    res = subprocess.run([sys.executable, "-m", "workbench", "runs", "--json"], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["runs"]


def test_killed_run_reads_interrupted(tmp_path, tiny_model_dir):
    env = _env(tmp_path, WB_PAUSE_AT="run-opened")
    proc = _start(["eval", tiny_model_dir, "--suite", _suite(tmp_path)], env)
    _wait_paused(proc, tmp_path / "paused")
    (running,) = _runs(tmp_path)
    assert running["status"] == "started"  # its process is alive: not interrupted
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed,) = _runs(tmp_path)
    assert killed["status"] == "interrupted"
    on_disk = json.loads((tmp_path / "store" / "runs" / killed["run_id"] / "run.json").read_text())
    assert on_disk["status"] == "started" and on_disk["owner"]["pid"] == proc.pid


@pytest.mark.slow
def test_export_publishes_only_verified_files_and_cleans_a_killed_staging(tmp_path, tiny_model_dir):
    """kill -9 during verification: -o stays absent and the run reads interrupted; the next export removes the
    dead process's staging folder, and Ctrl-C during its own verification (exit 130) leaves nothing either."""
    out = tmp_path / "gguf"
    args = ["export", tiny_model_dir, "--format", "gguf", "-q", "q8_0", "-o", out]
    proc = _start(args, _env(tmp_path, WB_PAUSE_AT="export-verify"))
    _wait_paused(proc, tmp_path / "paused")
    (staged,) = list(tmp_path.glob(".gguf.partial-*"))
    assert list(staged.rglob("*Q8_0.gguf")), "the quantized file is built before verification"
    assert not out.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and staged.exists()
    assert [r["status"] for r in _runs(tmp_path)] == ["interrupted"]

    (tmp_path / "paused").unlink()
    again = _start(args, _env(tmp_path, WB_PAUSE_AT="export-verify"))
    _wait_paused(again, tmp_path / "paused")
    assert not staged.exists(), "the killed process's staging folder is removed by the next export"
    again.send_signal(signal.SIGINT)
    assert again.wait(timeout=60) == 130
    assert not out.exists() and not list(tmp_path.glob(".gguf.partial-*"))
    assert sorted(r["status"] for r in _runs(tmp_path)) == ["error", "interrupted"]


def test_converter_dies_with_wb(tmp_path, tiny_model_dir):
    proc = _start(["export", tiny_model_dir, "--format", "gguf", "-q", "f16", "--no-verify", "-o", tmp_path / "g"],
                  _env(tmp_path, WB_PAUSE_AT="tool-running"))
    _wait_paused(proc, tmp_path / "paused")
    (converter,) = _children(proc.pid)
    assert "convert_hf_to_gguf" in Path(f"/proc/{converter}/cmdline").read_text()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # within 2 s: by itself the converter would still be importing torch, and then run for seconds more
    assert _gone(converter, timeout=2), "llama.cpp's converter outlived a killed wb"
    assert not (tmp_path / "g").exists()


def test_local_judge_server_dies_with_wb(tmp_path, tiny_model_dir):
    pytest.importorskip("fastapi", reason="needs the judge extra (llama-cpp-python[server])")
    suite = _suite(tmp_path, n=1, extra=", {type: judge, rubric: '5: right; 1: wrong'}")
    suite.write_text(suite.read_text() + "judge: {model: default, concurrency: 1}\n")
    proc = _start(["eval", tiny_model_dir, "--suite", suite],
                  _env(tmp_path, WB_PAUSE_AT="judge-server-up", WB_JUDGE_CACHE=tmp_path / "judge-cache"))
    _wait_paused(proc, tmp_path / "paused")
    (server,) = [c for c in _children(proc.pid) if "llama_cpp.server" in Path(f"/proc/{c}/cmdline").read_text()]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _gone(server), "the judge's llama.cpp server outlived a killed wb"


def test_dashboard_child_dies_when_wb_gets_sigterm(tmp_path):
    pytest.importorskip("streamlit", reason="needs the dashboard extra (streamlit)")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "store").mkdir()
    proc = _start(["dashboard", "--store", tmp_path / "store", "--port", port], _env(tmp_path))
    deadline = time.monotonic() + 120
    while True:  # serving: the page answers
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    (child,) = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)  # as systemd, docker stop or a CI runner stop it
    proc.wait(timeout=30)
    assert _gone(child), "Streamlit kept serving after wb got SIGTERM"


def test_full_disk_leaves_the_store_consistent(tmp_path, tiny_model_dir):
    """The samples of an eval do not fit on the store's disk: one line naming the file and 'no space left', and
    a store whose every file parses, with no temporary file left."""
    disk = SmallDisk(tmp_path / "store", "1m")
    try:
        suite = _suite(tmp_path, n=40, reference="r" * 40_000)
        res = subprocess.run([sys.executable, "-m", "workbench", "eval", tiny_model_dir, "--suite", suite],
                             env=_env(tmp_path), capture_output=True, text=True, timeout=600)
        assert res.returncode == 4, res.stderr
        assert "Traceback" not in res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert "no space left" in last and "say.jsonl" in last, last
        store = tmp_path / "store"
        assert not [p for p in store.rglob("*") if p.name.endswith(".tmp")]
        for run_json in store.glob("runs/*/run.json"):
            assert json.loads(run_json.read_text())["status"] in ("error", "started")
        with sqlite3.connect(store / "index.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [r["status"] for r in _runs(tmp_path)] in (["error"], ["interrupted"])
    finally:
        disk.close()


HF_HOME_PROBE = """
import atexit, json, os, sys
probe = sys.argv[1]
atexit.register(lambda: open(probe, "w").write(json.dumps({k: os.environ.get(k) for k in ("HF_HOME", "HF_DATASETS_CACHE")})))
sys.argv = ["wb", *sys.argv[2:]]
from workbench.cli.main import run
run()
"""


def _verb_with_probe(tmp_path: Path, args: list, env: dict) -> tuple[subprocess.CompletedProcess, dict]:
    probe = tmp_path / "hf_home_after"
    res = subprocess.run([sys.executable, "-c", HF_HOME_PROBE, str(probe), *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=600)
    return res, json.loads(probe.read_text())


@pytest.mark.parametrize("verb", ["merge", "train", "eval", "runs", "doctor"])
def test_json_is_one_object_and_hf_home_is_untouched(verb, tmp_path, tiny_model_dir, request):
    """GPTQModel's tokenicer, imported by peft when it loads an adapter, does os.environ.setdefault("HF_HOME", "/tmp/tokenicer_hf_home"):
    the user's HF_HOME (here unset, so the hub's default) must survive every verb, and --json's stdout must be
    exactly one JSON object even where a library prints a banner."""
    env = _env(tmp_path)
    for name in ("HF_HOME", "XDG_CACHE_HOME", "HF_DATASETS_CACHE"):
        env.pop(name, None)
    expected = str(Path.home() / ".cache" / "huggingface")
    if verb == "merge":
        args = ["merge", request.getfixturevalue("tiny_adapter_dir"), "-o", tmp_path / "merged", "--json"]
    elif verb == "train":
        recipe = tmp_path / "recipe.yaml"
        (tmp_path / "rows.jsonl").write_text("".join(
            json.dumps({"prompt": f"Say {i}", "reference": str(i)}) + "\n" for i in range(2)))
        recipe.write_text(f"name: tiny-lora\nbase: {tiny_model_dir}\ntrain_data: rows.jsonl\n"
                          "lora: {r: 2, alpha: 4}\ntraining: {max_steps: 1, batch_size: 2, logging_steps: 1}\n")
        args = ["train", recipe, "-o", tmp_path / "adapter", "--json"]
    elif verb == "eval":
        args = ["eval", tiny_model_dir, "--suite", _suite(tmp_path), "--json"]
    else:
        args = [verb, "--json"]
    res, after = _verb_with_probe(tmp_path, args, env)
    assert res.returncode == 0, res.stderr
    assert isinstance(json.loads(res.stdout), dict), res.stdout[:400]
    assert after["HF_HOME"] == expected
    # lm-eval's `datasets` caches Arrow copies of the local mirrors: with wb's other caches, not in ~/.cache
    assert after["HF_DATASETS_CACHE"] == str(Path(env["WB_HOME"]) / "hf-datasets")


def test_failed_converter_log_is_kept_in_the_run_folder(tmp_path, tiny_model_dir):
    """llama.cpp's converter fails (here a stand-in checkout whose converter reports an error, as a real one does
    on a model it cannot convert): the error names the log, which lives in the export run's folder, not in /tmp
    or WB_HOME, and nothing is published."""
    checkout = tmp_path / "llama.cpp"
    (checkout / "gguf-py").mkdir(parents=True)
    (checkout / "convert_hf_to_gguf.py").write_text(
        "import sys\nprint('INFO: loading model')\nprint('ERROR: tensor blk.0.attn_q.weight has no mapping')\n"
        "sys.exit(1)\n")
    env = _env(tmp_path, WB_HOME=tmp_path / "home", WB_LLAMA_CPP_DIR=checkout)
    res = subprocess.run([sys.executable, "-m", "workbench", "export", tiny_model_dir, "-q", "f16", "--no-verify",
                          "-o", tmp_path / "g"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 3, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "has no mapping" in last
    (run,) = _runs(tmp_path)
    logs = list((tmp_path / "store" / "runs" / run["run_id"] / "logs").glob("*.log"))
    assert len(logs) == 1 and str(logs[0]) in last and "has no mapping" in logs[0].read_text()
    assert not list((tmp_path / "home").rglob("*.log"))
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob(".g.partial-*"))


def test_staging_of_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path):
    """What a killed merge, train or export leaves beside its output (`.OUT.partial-PID.START-*`) is removed by
    the next staging for the same output; another process's staging in progress is not."""
    from workbench.store.files import staging_dir
    from workbench.system.processes import start_time

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_start = start_time(dead.pid) or "1"
    dead.wait()
    stale = tmp_path / f".out.partial-{dead.pid}.{dead_start}-abc"
    (stale / "work").mkdir(parents=True)
    (stale / "work" / "model.safetensors").write_bytes(b"x" * 1024)
    live = tmp_path / f".out.partial-{os.getpid()}.{start_time(os.getpid())}-def"
    live.mkdir()
    fresh = staging_dir(tmp_path / "out")
    assert not stale.exists() and live.exists() and fresh.exists()
    assert fresh.name.startswith(f".out.partial-{os.getpid()}.")

"""Trackers for real: a `mlflow server` on 127.0.0.1 (sqlite backend, artifacts in tmp) that `wb eval --mlflow`
and `wb train` with `report_to: [mlflow, tensorboard]` log to, read back through the MLflow client from that
server; TensorBoard's event files read back with its EventAccumulator; trackers wb has no extra for (wandb,
trackio) are exit 4 naming what to install, before any model loads."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.store.tracking import metric_key
from workbench.system.extras import available


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_mlflow_server(root: Path):
    """`mlflow server` on loopback (sqlite backend, artifacts beside it, log in root/server.log): its URL."""
    port = _free_port()
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
             str(root / "artifacts")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, (root / "server.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def mlflow_server(module_tmp):
    with running_mlflow_server(module_tmp("mlflow")) as uri:
        yield uri


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "WB_STORE": str(tmp_path / "store"), **{k: str(v) for k, v in extra.items()}}


def _wb(args: list, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=env.get("WB_STORE"))


def _suite(tmp_path: Path) -> Path:
    questions = [("What is 2 + 2? Reply with the number only.", "4"), ("What is the capital of France?", "Paris"),
                 ("What colour is the sky on a clear day?", "blue"), ("How many legs does a cat have?", "4")]
    (tmp_path / "items.jsonl").write_text("".join(
        json.dumps({"id": str(i), "prompt": q, "reference": a}) + "\n" for i, (q, a) in enumerate(questions)))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: tiny\ntasks:\n  - name: ask\n    data: items.jsonl\n"
                     "    generation: {max_new_tokens: 12}\n    scorers: [{type: contains}, {type: token_f1}]\n")
    return suite


def _recipe(tmp_path: Path, base: Path, report_to) -> Path:
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"Say {i}."}], "reference": f"{i}"}
            for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"name": "tracked-tiny", "base": str(base), "train_data": "train.jsonl",
                                  "report_to": report_to, "training": {"max_steps": 4, "batch_size": 4,
                                  "logging_steps": 1, "max_length": 64, "save_steps": None}}))
    return recipe


def test_eval_run_logged_to_a_real_mlflow_server(tmp_path, default_ckpt, mlflow_server):
    import mlflow

    (tmp_path / "store").mkdir()
    res = _wb(["eval", "default", "--suite", _suite(tmp_path), "--mlflow", mlflow_server,
               "--mlflow-experiment", "wb-test", "--json"], _env(tmp_path))
    assert res.returncode == 0, res.stderr
    wb_run = json.loads(res.stdout)
    manifest = json.loads((tmp_path / "store" / "runs" / wb_run["run_id"] / "run.json").read_text())
    assert manifest["mlflow"]["experiment"] == "wb-test"

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    logged = client.get_run(manifest["mlflow"]["run_id"])
    expected = {metric_key(m["task"], m["metric"]): m["value"] for m in wb_run["metrics"]}
    expected |= {metric_key(m["task"], m["metric"]) + "_stderr": m["stderr"] for m in wb_run["metrics"]
                 if m["stderr"] is not None}
    print("MLflow server returned metrics:", logged.data.metrics)
    assert logged.data.metrics == expected and set(expected) >= {"ask/contains", "ask/token_f1"}
    assert logged.info.status == "FINISHED" and logged.data.tags["wb.run_id"] == wb_run["run_id"]
    params = logged.data.params
    assert params["suite"] == "tiny" and params["checkpoint.sha"] == manifest["checkpoint"]["sha"]
    assert params["versions.torch"] == manifest["versions"]["torch"]
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} == {"run.json", "results.json"}
    artifact = json.loads(Path(client.download_artifacts(logged.info.run_id, "run.json", str(tmp_path))).read_text())
    assert artifact == {k: v for k, v in manifest.items() if k != "mlflow"}


def test_mlflow_uri_credentials_never_reach_the_manifest(tmp_path, tiny_model_dir, mlflow_server):
    (tmp_path / "store").mkdir()
    uri = mlflow_server.replace("http://", "http://someone:s3cret@")
    res = _wb(["eval", tiny_model_dir, "--suite", _suite(tmp_path), "--mlflow", uri, "--json"],
              _env(tmp_path, MLFLOW_TRACKING_TOKEN="tok-s3cret"))
    assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "store" / "runs" / json.loads(res.stdout)["run_id"]
    text = (run_dir / "run.json").read_text()
    assert "s3cret" not in text and "tok-" not in text and mlflow_server in text


def test_an_mlflow_server_that_does_not_answer_is_exit_4_before_the_model_loads(tmp_path, tiny_model_dir):
    (tmp_path / "store").mkdir()
    started = time.monotonic()
    res = _wb(["eval", tiny_model_dir, "--suite", _suite(tmp_path), "--mlflow", f"http://127.0.0.1:{_free_port()}"],
              _env(tmp_path))
    assert res.returncode == 4 and "did not answer" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 60
    assert not (tmp_path / "store" / "runs").exists()


def test_train_reports_to_mlflow_and_tensorboard(tmp_path, tiny_model_dir, mlflow_server):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "store").mkdir()
    res = _wb(["train", _recipe(tmp_path, tiny_model_dir, ["mlflow", "tensorboard"]), "-o", tmp_path / "adapter",
               "--json"], _env(tmp_path, MLFLOW_TRACKING_URI=mlflow_server, MLFLOW_EXPERIMENT_NAME="wb-train-test"))
    assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "store" / "runs" / json.loads(res.stdout)["run_id"]
    log = [json.loads(line) for line in (run_dir / "samples" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    (experiment,) = [e for e in client.search_experiments() if e.name == "wb-train-test"]
    (logged,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(logged.info.run_id, "loss")
    print("MLflow server returned train loss:", [(m.step, m.value) for m in history])
    assert [(m.step, m.value) for m in history] == [(r["step"], r["loss"]) for r in log]

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in scalars] == [1, 2, 3, 4]
    assert [v for _, v in scalars] == pytest.approx([r["loss"] for r in log], rel=1e-6)  # stored as float32


@pytest.mark.parametrize("tracker", ["wandb", "trackio"])
def test_a_tracker_wb_has_no_extra_for_is_exit_4_naming_what_to_install(tracker, tmp_path, tiny_model_dir):
    if available(tracker):
        pytest.skip(f"{tracker} is installed here; the test is for a machine without it")
    (tmp_path / "store").mkdir()
    res = _wb(["train", _recipe(tmp_path, tiny_model_dir, tracker), "-o", tmp_path / "adapter"], _env(tmp_path))
    assert res.returncode == 4 and len(res.stderr.strip().splitlines()) == 1
    assert f"report_to: {tracker} needs {tracker}: pip install {tracker}" in res.stderr
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "store" / "runs").exists()

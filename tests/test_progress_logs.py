"""CI logs stay readable: off a terminal, progress is an occasional line, also for lm-eval's tqdm bars; --quiet
prints only the result and errors; `wb eval` fails fast on a missing checkpoint and on an unreachable hub."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def wb(*args, env=None, timeout=600):
    # stderr is a pipe here, exactly as in CI: not a terminal
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _redraws(stderr: str) -> int:
    """Progress updates a log shows: tqdm separates its redraws with carriage returns."""
    return stderr.count("\r")


def test_task_eval_progress_off_a_terminal_is_a_line_per_task(tiny_model_dir, store_dir):
    res = wb("eval", str(tiny_model_dir), "--suite", "contacts", "--limit", "6")
    assert res.returncode == 0, res.stderr[-2000:]
    assert _redraws(res.stderr) == 0, res.stderr[-2000:]
    progress = [ln for ln in res.stderr.splitlines() if ln.startswith("contacts") and "/6" in ln]
    # the start, the end, and at most one 30-second update between
    assert 2 <= len(progress) <= 3 and "0/6 (0%)" in progress[0], res.stderr
    assert "6/6 (100%)" in progress[-1] and "/s" in progress[-1]


def test_progress_interval_is_configurable(tiny_model_dir, store_dir, tmp_path):
    # generation batches of 2: with no interval, a line per batch
    suite = tmp_path / "small-batches.yaml"
    suite.write_text(f"name: small-batches\ntasks:\n  - name: contacts\n    data: {REPO / 'evals/data/contacts_test.jsonl'}\n"
                     "    generation: {max_new_tokens: 8, batch_size: 2}\n    scorers: [{type: exact}]\n")
    res = wb("eval", str(tiny_model_dir), "--suite", str(suite), "--limit", "6", env={"WB_PROGRESS_INTERVAL": "0"})
    assert res.returncode == 0, res.stderr[-2000:]
    progress = [ln for ln in res.stderr.splitlines() if ln.startswith("contacts") and "/6" in ln]
    assert [ln.split(": ")[2].split(" ")[0] for ln in progress] == ["0/6", "2/6", "4/6", "6/6"], res.stderr
    assert "eta" in progress[1], progress


def test_lm_eval_bars_are_held_to_the_log_pace(tiny_model_dir, store_dir, data_dir):
    # 15 questions x 4 choices = 60 loglikelihood requests: tqdm's default pace redraws on most of them.
    res = wb("eval", str(tiny_model_dir), "--tasks", "mmlu_anatomy", "--limit", "15", "--data-dir", str(data_dir),
             "--no-cache")
    assert res.returncode == 0, res.stderr[-2000:]
    bars = res.stderr.count("it/s]") + res.stderr.count("s/it]")
    assert bars >= 1, res.stderr[-2000:]  # lm-eval's bars still report
    assert _redraws(res.stderr) <= 8, res.stderr[-3000:]


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_only_the_result(tiny_model_dir, store_dir, where):
    args = ["eval", str(tiny_model_dir), "--suite", "contacts", "--limit", "3"]
    args = ["--quiet", *args] if where == "before" else [*args, "--quiet"]
    res = wb(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.strip() == "", res.stderr
    assert "contacts" in res.stdout and "exact" in res.stdout


def test_quiet_still_prints_errors(store_dir):
    res = wb("--quiet", "eval", "/no/such/ckpt", "--suite", "contacts")
    assert res.returncode == 3 and res.stderr.strip().startswith("error:") and "/no/such/ckpt" in res.stderr


def test_missing_checkpoint_is_reported_before_any_data_problem(store_dir, tmp_path):
    env = {v: "" for v in OFFLINE_VARS} | {"WB_DATA_DIR": "", "HF_ENDPOINT": "http://127.0.0.1:9"}
    res = wb("eval", "/no/such/ckpt", "--suite", "regression", env=env, timeout=120)
    assert res.returncode == 3, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint '/no/such/ckpt': no such file or directory")


def test_unreachable_hub_is_decided_by_one_probe(tiny_model_dir, store_dir):
    # Not offline by any variable, and no mirror: the hub is asked, and nothing listens on port 9.
    env = {v: "" for v in OFFLINE_VARS} | {"WB_DATA_DIR": "", "HF_ENDPOINT": "http://127.0.0.1:9"}
    res = wb("eval", str(tiny_model_dir), "--tasks", "mmlu_anatomy", "--limit", "2", env=env, timeout=300)
    assert res.returncode == 4, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "a probe of http://127.0.0.1:9 failed" in errors[0], res.stderr[-2000:]
    assert "--data-dir" in errors[0]
    assert "Retrying" not in res.stderr and "retry" not in res.stderr.lower(), res.stderr[-2000:]
    assert not (store_dir / "runs").exists() or not any((store_dir / "runs").iterdir())

"""`wb train --resume` after a real kill -9: a child `python -m workbench train` is stopped at a named point
(WB_PAUSE_AT, workbench.system.faultpoints), killed with SIGKILL, resumed, and compared with an uninterrupted run:
the same adapter weights within float tolerance and the same loss log."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STEPS, SAVE_STEPS = 8, 2


def _recipe(tmp_path: Path, base: Path, **training) -> Path:
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"Say {i} twice."}], "reference": f"{i} {i}"}
            for i in range(16)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"max_steps": STEPS, "batch_size": 4, "logging_steps": 1, "max_length": 64, "save_steps": SAVE_STEPS,
            "learning_rate": 5e-3, **training}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"name": "resume-tiny", "base": str(base), "train_data": "train.jsonl",
                                  "lora": {"r": 4, "alpha": 8, "dropout": 0.1}, "training": spec}))
    return recipe


def _env(tmp_path: Path, **extra) -> dict:
    env = {**os.environ, "WB_STORE": str(tmp_path / "store"), "WB_PAUSE_MARKER": str(tmp_path / "paused")}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def _train(args: list, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", "train", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


def _train_killed_at(point: str, args: list, tmp_path: Path, while_paused=None) -> None:
    marker = tmp_path / "paused"
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "train", *map(str, args)],
                            env=_env(tmp_path, WB_PAUSE_AT=point), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None, f"wb exited {proc.returncode} before {point}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"wb did not reach {point}"
        time.sleep(0.1)
    try:
        if while_paused:
            while_paused(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _weights(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _loss_log(store: Path, run_id: str) -> list[tuple]:
    rows = [json.loads(x) for x in (store / "runs" / run_id / "samples" / "train_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["learning_rate"]) for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(module_tmp, tiny_model_dir):
    tmp = module_tmp("uninterrupted")
    res = _train([_recipe(tmp, tiny_model_dir), "-o", tmp / "adapter", "--json"], _env(tmp))
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    assert not (tmp / "adapter.checkpoints").exists()  # removed once the adapter is published
    return _weights(tmp / "adapter"), _loss_log(tmp / "store", run_id)


def test_kill_9_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path, tiny_model_dir, uninterrupted):
    recipe, out = _recipe(tmp_path, tiny_model_dir), tmp_path / "adapter"
    _train_killed_at("train-step-5", [recipe, "-o", out], tmp_path)  # checkpoint-4 saved, step 5 lost
    saved = sorted(p.name for p in (tmp_path / "adapter.checkpoints").glob("checkpoint-*"))
    assert saved == ["checkpoint-2", "checkpoint-4"] and not out.exists()

    again = _train([recipe, "-o", out], _env(tmp_path))  # without --resume: refused, pointing at --resume
    assert again.returncode == 3 and "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    res = _train([recipe, "-o", out, "--resume", "--json"], _env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "resuming from checkpoint-4 (step 4 of 8)" in res.stderr
    weights, log = uninterrupted
    diff = _max_abs_diff(_weights(out), weights)
    print(f"resume after kill at step 5: max |delta| of adapter weights {diff:.3g}")
    assert diff < 1e-6
    resumed_log = _loss_log(tmp_path / "store", json.loads(res.stdout)["run_id"])
    assert [s for s, _, _ in resumed_log] == [s for s, _, _ in log] == list(range(1, STEPS + 1))
    loss_diff = max(abs(a[1] - b[1]) for a, b in zip(resumed_log, log))
    print(f"loss log: max |delta| {loss_diff:.3g} over {len(log)} steps; learning rates equal: "
          f"{[r[2] for r in resumed_log] == [r[2] for r in log]}")
    assert loss_diff < 1e-5 and [r[2] for r in resumed_log] == pytest.approx([r[2] for r in log], rel=1e-9)
    assert not (tmp_path / "adapter.checkpoints").exists()


def test_a_half_written_checkpoint_is_never_resumed_from(tmp_path, tiny_model_dir, uninterrupted):
    recipe, out = _recipe(tmp_path, tiny_model_dir), tmp_path / "adapter"
    _train_killed_at("train-checkpoint-staged", [recipe, "-o", out], tmp_path)  # step 2 written, not moved in
    root = tmp_path / "adapter.checkpoints"
    assert (root / ".staging" / "checkpoint-2").is_dir() and not list(root.glob("checkpoint-*"))
    res = _train([recipe, "-o", out, "--resume"], _env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "nothing to resume" in res.stderr and "training from step 0" in res.stderr
    assert _max_abs_diff(_weights(out), uninterrupted[0]) < 1e-6


def test_resume_refuses_a_changed_recipe_and_a_run_still_training(tmp_path, tiny_model_dir):
    out = tmp_path / "adapter"
    recipe = _recipe(tmp_path, tiny_model_dir)

    def second_process(pid: int) -> None:
        res = _train([recipe, "-o", out, "--resume"], _env(tmp_path))
        assert res.returncode == 3 and f"another `wb train` (pid {pid}) is training into" in res.stderr

    _train_killed_at("train-step-3", [recipe, "-o", out], tmp_path, while_paused=second_process)
    changed = _recipe(tmp_path, tiny_model_dir, learning_rate=1e-3)
    res = _train([changed, "-o", out, "--resume"], _env(tmp_path))
    assert res.returncode == 3
    assert "recipe changed" in res.stderr and "training.learning_rate: 0.005 -> 0.001" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() and (tmp_path / "adapter.checkpoints" / "checkpoint-2").is_dir()  # kept for a resume


@pytest.mark.slow
def test_kill_9_then_resume_on_the_default_model(tmp_path):
    """The bundled contacts-lora recipe on the embedded default model, 6 steps of 4 rows with a checkpoint every 2:
    killed at step 5, resumed from step 4, compared with an uninterrupted run."""
    import yaml

    from workbench.system.content import content_dir

    bundled = content_dir("evals") / "recipes" / "contacts-lora.yaml"
    recipe = yaml.safe_load(bundled.read_text())
    recipe["train_data"] = str((bundled.parent / recipe["train_data"]).resolve())
    recipe.pop("data_checks")
    recipe["training"].update(max_steps=6, save_steps=2, logging_steps=1, batch_size=4, max_length=128)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    straight = _train([path, "-o", tmp_path / "straight", "--json"], _env(tmp_path))
    assert straight.returncode == 0, straight.stderr
    _train_killed_at("train-step-5", [path, "-o", tmp_path / "resumed"], tmp_path)
    res = _train([path, "-o", tmp_path / "resumed", "--resume", "--json"], _env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "resuming from checkpoint-4 (step 4 of 6)" in res.stderr
    diff = _max_abs_diff(_weights(tmp_path / "resumed"), _weights(tmp_path / "straight"))
    a = _loss_log(tmp_path / "store", json.loads(straight.stdout)["run_id"])
    b = _loss_log(tmp_path / "store", json.loads(res.stdout)["run_id"])
    loss_diff = max(abs(x[1] - y[1]) for x, y in zip(a, b))
    print(f"default model: max |delta| adapter weights {diff:.3g}, loss log max |delta| {loss_diff:.3g} "
          f"over steps {[s for s, _, _ in b]}; losses {[round(x[1], 4) for x in a]}")
    assert [s for s, _, _ in a] == [s for s, _, _ in b] == list(range(1, 7))
    assert diff < 1e-5 and loss_diff < 1e-5

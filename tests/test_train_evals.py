"""Evals during training (`eval_during_training`), through the CLI on the tiny model: eval runs in the store
linked to the train run by step, measured in-process on the live model and equal to what `wb eval` measures on
the same weights loaded from disk; a max_drop forgetting gate that stops training; a suite that does not load
is exit 3 before the model loads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.store import Store

MMLU = "mmlu_abstract_algebra"


def _env(tmp_path: Path, data_dir: Path) -> dict:
    return {**os.environ, "WB_STORE": str(tmp_path / "store"), "WB_DATA_DIR": str(data_dir)}


def _wb(args: list, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=900)


def _suite(tmp_path: Path, references: list[str] | None = None, harness: bool = True) -> Path:
    refs = references or ["x"] * 8
    (tmp_path / "items.jsonl").write_text("".join(
        json.dumps({"id": str(i), "prompt": f"Say {i}", "reference": r}) + "\n" for i, r in enumerate(refs)))
    suite = tmp_path / "suite.yaml"
    text = ("name: live\ntasks:\n  - name: say\n    data: items.jsonl\n    generation: {max_new_tokens: 4}\n"
            "    scorers: [{type: exact}, {type: token_f1}]\n")
    if harness:
        text += f"harness:\n  - tasks: [{MMLU}]\n    limit: 6\n    num_fewshot: 0\n"
    suite.write_text(text)
    return suite


def _recipe(tmp_path: Path, base: Path, evals: dict, **training) -> Path:
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"Say {i}."}], "reference": "zebra " * 6}
            for i in range(16)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"max_steps": 4, "batch_size": 4, "logging_steps": 1, "max_length": 64, "learning_rate": 5e-3,
            "save_steps": None, **training}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"name": "live-tiny", "base": str(base), "train_data": "train.jsonl",
                                  "training": spec, "eval_during_training": evals}))
    return recipe


def _evals_of(store: Store, train_run: str) -> dict[int, dict]:
    runs = [store.load(m["run_id"]) for m in store.list_runs("eval")]
    return {r.manifest["lineage"]["step"]: r for r in runs if (r.manifest.get("lineage") or {}).get("train_run") == train_run}


def _metrics(run) -> dict:
    return {(m["task"], m["metric"]): m["value"] for m in run.metrics}


def test_evals_during_training_are_runs_linked_by_step_and_match_wb_eval(tmp_path, tiny_model_dir, data_dir):
    env = _env(tmp_path, data_dir)
    suite = _suite(tmp_path)
    res = _wb(["train", _recipe(tmp_path, tiny_model_dir, {"suite": str(suite), "every_steps": 2}),
               "-o", tmp_path / "adapter", "--json"], env)
    assert res.returncode == 0, res.stderr
    assert "eval at step 0 (base)" in res.stderr and "eval at step 4" in res.stderr
    train_run = json.loads(res.stdout)["run_id"]
    store = Store(tmp_path / "store")
    evals = _evals_of(store, train_run)
    assert sorted(evals) == [0, 2, 4]
    assert all((MMLU, "acc") in _metrics(r) and ("say", "exact") in _metrics(r) for r in evals.values())
    recorded = store.load(train_run).manifest["eval_during_training"]
    assert [r["step"] for r in recorded["runs"]] == [0, 2, 4] and recorded["base_run"] == evals[0].run_id
    assert recorded["stopped_early"] is None

    # the same weights loaded from disk by `wb eval`: the base (step 0) and the final adapter (step 4)
    for ckpt, step in ((tiny_model_dir, 0), (tmp_path / "adapter", 4)):
        res = _wb(["eval", ckpt, "--suite", suite, "--no-cache", "--json"], env)
        assert res.returncode == 0, res.stderr
        from_disk = store.load(json.loads(res.stdout)["run_id"])
        assert _metrics(from_disk) == pytest.approx(_metrics(evals[step]), abs=1e-6)
        assert [s["output"] for s in from_disk.samples("say")] == [s["output"] for s in evals[step].samples("say")]
        live = {s["doc_id"]: s["metrics"] for s in evals[step].samples(f"lm-eval.{MMLU}")}
        assert {s["doc_id"]: s["metrics"] for s in from_disk.samples(f"lm-eval.{MMLU}")} == live
    # the step-2 adapter differs from the base: training moved it (outputs or loglikelihoods changed)
    assert [s["output"] for s in evals[2].samples("say")] != [s["output"] for s in evals[0].samples("say")] or \
        evals[2].samples(f"lm-eval.{MMLU}") != evals[0].samples(f"lm-eval.{MMLU}")


def test_training_with_evals_takes_the_same_steps_as_without(tmp_path, tiny_model_dir, data_dir):
    env = _env(tmp_path, data_dir)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    suite = _suite(tmp_path, harness=False)
    with_evals = _wb(["train", _recipe(tmp_path / "a", tiny_model_dir, {"suite": str(suite), "every_steps": 1}),
                      "-o", tmp_path / "a" / "adapter"], env)
    assert with_evals.returncode == 0, with_evals.stderr
    recipe = _recipe(tmp_path / "b", tiny_model_dir, {"suite": str(suite), "every_steps": 1})
    plain = json.loads(recipe.read_text())
    del plain["eval_during_training"]
    recipe.write_text(json.dumps(plain))
    without = _wb(["train", recipe, "-o", tmp_path / "b" / "adapter"], env)
    assert without.returncode == 0, without.stderr
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / x / "adapter" / "adapter_model.safetensors")) for x in ("a", "b"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0


def test_a_forgetting_gate_stops_training_and_says_why(tmp_path, tiny_model_dir, data_dir):
    env = _env(tmp_path, data_dir)
    # references = the base's own greedy answers, so the base scores 1.0 and training away from them drops it
    probe = _wb(["eval", tiny_model_dir, "--suite", _suite(tmp_path, harness=False), "--json"], env)
    assert probe.returncode == 0, probe.stderr
    base_outputs = [s["output"] for s in Store(tmp_path / "store").load(json.loads(probe.stdout)["run_id"]).samples("say")]
    suite = _suite(tmp_path, references=base_outputs, harness=False)
    evals = {"suite": str(suite), "every_steps": 2,
             "max_drop": [{"task": "say", "metric": "exact", "max_drop": 0.2}]}
    res = _wb(["train", _recipe(tmp_path, tiny_model_dir, evals, max_steps=12, learning_rate=5e-2),
               "-o", tmp_path / "adapter", "--json"], env)
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "training stopped at step" in last and "forgetting gate 'say/exact' failed" in last, last
    summary = json.loads(res.stdout)
    stopped = summary["stopped_early"]
    assert stopped["step"] < 12 and summary["steps"] == stopped["step"]
    train = Store(tmp_path / "store").load(summary["run_id"])
    assert train.manifest["status"] == "ok" and train.manifest["eval_during_training"]["stopped_early"] == stopped
    assert "more than max_drop 0.2, and significant" in stopped["reason"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()  # kept, for a look at what went wrong
    print("forgetting gate:", last)


def test_an_eval_during_training_suite_that_does_not_load_is_exit_3_before_the_model_loads(tmp_path, tiny_model_dir,
                                                                                             data_dir):
    env = _env(tmp_path, data_dir)
    res = _wb(["train", _recipe(tmp_path, tiny_model_dir, {"suite": "no-such-suite", "every_steps": 2}),
               "-o", tmp_path / "adapter"], env)
    assert res.returncode == 3 and len(res.stderr.strip().splitlines()) == 1
    assert "eval_during_training: suite 'no-such-suite': not found" in res.stderr
    bad_gate = {"suite": str(_suite(tmp_path, harness=False)), "every_steps": 2,
                "max_drop": [{"task": "say", "metric": "nope", "max_drop": 0.1}]}
    res = _wb(["train", _recipe(tmp_path, tiny_model_dir, bad_gate), "-o", tmp_path / "adapter"], env)
    assert res.returncode == 3 and "task 'say' has no metric 'nope'" in res.stderr
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "adapter.checkpoints").exists()
    assert not (tmp_path / "store" / "runs").exists()


def test_a_resumed_run_keeps_the_base_measurement_and_the_step_chain(tmp_path, tiny_model_dir, data_dir):
    import signal
    import time

    from workbench.dashboard import views

    env = {**_env(tmp_path, data_dir), "WB_PAUSE_AT": "train-step-3", "WB_PAUSE_MARKER": str(tmp_path / "paused")}
    recipe = _recipe(tmp_path, tiny_model_dir, {"suite": str(_suite(tmp_path, harness=False)), "every_steps": 2},
                     max_steps=6, save_steps=2)
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "train", recipe, "-o", tmp_path / "adapter"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (tmp_path / "paused").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store(tmp_path / "store")
    (killed,) = [m["run_id"] for m in store.list_runs("train")]
    assert sorted(_evals_of(store, killed)) == [0, 2]

    res = _wb(["train", recipe, "-o", tmp_path / "adapter", "--resume", "--json"], _env(tmp_path, data_dir))
    assert res.returncode == 0, res.stderr
    assert "eval at step 0" not in res.stderr  # the killed run's base measurement is reused
    resumed = store.load(json.loads(res.stdout)["run_id"])
    recorded = resumed.manifest["eval_during_training"]
    assert recorded["base_run"] == _evals_of(store, killed)[0].run_id
    assert [(r["step"], r["train_run"]) for r in recorded["runs"]] == [(0, killed), (2, killed),
                                                                       (4, resumed.run_id), (6, resumed.run_id)]
    assert resumed.manifest["resumed_from"] == {"checkpoint": str(tmp_path / "adapter.checkpoints" / "checkpoint-2"),
                                                "step": 2, "train_runs": [killed]}
    rows = views.training_evals(store, resumed.run_id, store.list_runs())
    assert sorted({r["step"] for r in rows}) == [0, 2, 4, 6]


@pytest.mark.parametrize("change, message", [
    ({"report_to": "comet"}, "report_to"),
    ({"training": {"save_steps": 0}}, "training.save_steps: Input should be greater than or equal to 1"),
    ({"eval_during_training": {"suite": "contacts"}}, "eval_during_training.every_steps: Field required"),
    ({"eval_during_training": {"suite": "contacts", "every_steps": 2,
                               "max_drop": [{"task": "contacts", "metric": "exact", "min_value": 0.5}]}},
     "gate 'contacts/exact' needs a max_drop value"),
])
def test_bad_new_recipe_keys_are_exit_3_naming_the_key(change, message, tmp_path, tiny_model_dir):
    recipe = _recipe(tmp_path, tiny_model_dir, {"suite": "contacts", "every_steps": 2})
    recipe.write_text(json.dumps(json.loads(recipe.read_text()) | change))
    res = _wb(["train", recipe, "-o", tmp_path / "adapter"], {**os.environ, "WB_STORE": str(tmp_path / "store")})
    assert res.returncode == 3 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert str(recipe) in res.stderr and message in res.stderr
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "store" / "runs").exists()


@pytest.mark.slow
def test_evals_during_training_on_the_default_model(tmp_path, default_ckpt, data_dir):
    """The bundled contacts data on the embedded default model, with the contacts task and an MMLU slice watched
    every 4 of 8 steps and a forgetting gate on the slice: the task improves, the slice is measured against the base."""
    import yaml

    from workbench.dashboard import views
    from workbench.system.content import content_dir

    evals = content_dir("evals")
    (tmp_path / "watch.yaml").write_text(yaml.safe_dump({
        "name": "watch", "tasks": [{"name": "contacts", "data": str(evals / "data" / "contacts_test.jsonl"),
                                    "limit": 12, "generation": {"max_new_tokens": 64, "batch_size": 12},
                                    "scorers": [{"type": "exact"}, {"type": "json_fields"}]}],
        "harness": [{"tasks": ["mmlu_high_school_mathematics"], "limit": 24, "num_fewshot": 0}]}))
    recipe = yaml.safe_load((evals / "recipes" / "contacts-lora.yaml").read_text())
    recipe["train_data"] = str((evals / "recipes" / recipe["train_data"]).resolve())
    recipe.pop("data_checks")
    recipe["training"].update(max_steps=8, save_steps=None)
    recipe["eval_during_training"] = {"suite": "watch.yaml", "every_steps": 4, "max_drop": [
        {"task": "mmlu_high_school_mathematics", "metric": "acc", "max_drop": 0.10}]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    res = _wb(["train", tmp_path / "recipe.yaml", "-o", tmp_path / "adapter", "--json"], _env(tmp_path, data_dir))
    assert res.returncode == 0, res.stderr
    store = Store(tmp_path / "store")
    run_id = json.loads(res.stdout)["run_id"]
    rows = views.training_evals(store, run_id, store.list_runs())
    table = {(r["step"], r["series"]): r["value"] for r in rows}
    print("evals during training:", json.dumps({f"{s} {k}": round(v, 4) for (s, k), v in sorted(table.items())}))
    assert sorted({r["step"] for r in rows}) == [0, 4, 8]
    assert table[(8, "contacts/json_fields")] > table[(0, "contacts/json_fields")]
    assert store.load(run_id).manifest["eval_during_training"]["stopped_early"] is None

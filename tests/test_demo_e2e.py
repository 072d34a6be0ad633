"""The README's demo, end to end on the embedded default model: the real script, then checks on what it recorded."""

import os
import subprocess
from pathlib import Path

import pytest

from workbench.store import Store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(module_tmp, data_dir):
    out = module_tmp("demo")
    env = {**os.environ, "WB_DEMO_OUT": str(out), "WB_STORE": str(out / "store"), "WB_DATA_DIR": str(data_dir)}
    res = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True, env=env,
                         timeout=40 * 60)
    (out / "demo.log").write_text(res.stdout + res.stderr)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, Store(out / "store"), res.stdout + res.stderr


def _runs(store, kind):
    return [store.load(m["run_id"]) for m in reversed(store.list_runs(kind=kind))]


def _value(run, task, metric):
    return next(m for m in run.metrics if m["task"] == task and m["metric"] == metric)


@pytest.mark.slow
def test_adapter_beats_base_on_the_task(demo):
    _, store, _ = demo
    base, adapter = _runs(store, "eval")[:2]
    assert base.manifest["checkpoint"]["name"] == "default" and adapter.manifest["checkpoint"]["kind"] == "adapter"
    b, a = _value(base, "contacts", "exact"), _value(adapter, "contacts", "exact")
    assert a["n"] == b["n"] == 80
    # A real margin: more than five standard errors of the difference.
    assert a["value"] - b["value"] > 5 * (a["stderr"] ** 2 + b["stderr"] ** 2) ** 0.5, (b["value"], a["value"])
    for run in (base, adapter):  # the regression slice ran through lm-eval, from the local mirror
        tasks = {m["task"] for m in run.metrics}
        assert {"mmlu_philosophy", "gsm8k"} <= tasks
        sources = [s for h in run.manifest["harness"] for s in h["sources"].values()]
        assert sources and all(s.get("kind", "mirror") != "hub" for s in sources), sources


@pytest.mark.slow
def test_merge_matches_unmerged_logits(demo):
    _, store, _ = demo
    (merge,) = _runs(store, "merge")
    assert _value(merge, "merge_check", "max_abs_logit_diff")["value"] < 1e-3
    assert _value(merge, "merge_check", "argmax_agreement")["value"] == 1.0


@pytest.mark.slow
def test_gguf_files_answer_the_task_in_llama_cpp(demo):
    out, store, log = demo
    files = sorted((out / "gguf").glob("*.gguf"))
    assert [f.name.rsplit("-", 1)[-1] for f in files] == ["Q4_K_M.gguf", "Q8_0.gguf"]
    gguf_runs = [r for r in _runs(store, "eval") if r.manifest["checkpoint"]["format"] == "gguf"]
    assert len(gguf_runs) == 2
    adapter = _runs(store, "eval")[1]
    for run in gguf_runs:
        samples = run.samples("contacts")
        assert len(samples) == 80 and all(s["output"] and "<|im_end|>" not in s["output"] for s in samples)
        # The shipped file still does the job: close to the checkpoint it was exported from.
        assert _value(run, "contacts", "exact")["value"] >= _value(adapter, "contacts", "exact")["value"] - 0.15
    assert "greedy outputs" in log  # the side-by-side sample table was printed
    assert "wb gate passed" in (out / "gate.md").read_text()  # the Q8_0 file passed the release gates
    assert (out / "gate.xml").exists() and sorted((out / "gguf").glob("*.Modelfile"))  # JUnit, Ollama bundles


@pytest.mark.slow
def test_store_lists_every_stage(demo):
    _, store, log = demo
    kinds = sorted(m["kind"] for m in store.list_runs())
    assert kinds.count("eval") == 4 and {"train", "merge", "export"} <= set(kinds)
    assert all(m["status"] == "ok" for m in store.list_runs())
    assert "demo finished in" in log

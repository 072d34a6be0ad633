"""Every training method from its bundled recipe (evals/recipes/contacts-*.yaml), a few steps on the default model,
through the library API: the adapter evaluates and merges, its outputs differ from its base's, its lineage names the
method and data, and a QLoRA adapter is evaluated on its 4-bit base. The bad inputs of each method fail before a
model loads (`wb train` keeps its exit codes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import workbench
from workbench.config import TrainConfig, load_yaml_model
from workbench.errors import BadInput
from workbench.train.recipe import prepare_training
from workbench.train.rows import method_rows

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "evals" / "recipes"
DATA = REPO / "evals" / "data"

# method under test -> (bundled recipe, the training file its lineage must name)
TRAINED = {
    "sft": ("contacts-lora", "contacts_train.jsonl"),
    "qlora": ("contacts-qlora", "contacts_train.jsonl"),
    "dpo": ("contacts-dpo", "contacts_preference.jsonl"),
    "orpo": ("contacts-orpo", "contacts_preference.jsonl"),
    "kto": ("contacts-kto", "contacts_preference.jsonl"),
    "grpo": ("contacts-grpo", "contacts_train.jsonl"),
}
PROBE = [{"role": "user", "content": 'Give the contact in this message as one-line JSON with keys "name", "age", '
          '"city", "email".\nMessage: Registered today: Kofi Mensah of Accra, 41, email kofi.mensah@example.org.'}]


def wb(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def small_recipe(folder: Path, name: str, **changes) -> Path:
    """A copy of a bundled recipe, modified as a user would: a few short steps, data paths kept absolute."""
    raw = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    raw["train_data"] = str((RECIPES / raw["train_data"]).resolve())
    raw["training"].update(max_steps=3, batch_size=2, max_length=128, logging_steps=1, warmup_ratio=0.0)
    if raw["method"] == "grpo":
        raw["method_args"].update(num_generations=2, max_completion_length=32)
    for key, value in changes.items():
        raw[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def trained(module_tmp, default_ckpt):
    """One adapter per method, trained by the library API (what `wb train` calls) and scored on the contacts suite
    (limit 2) the first time a test asks for it."""
    made: dict[str, dict] = {}

    def get(method: str) -> dict:
        if method not in made:
            folder = module_tmp(f"train-{method}")
            recipe = small_recipe(folder, TRAINED[method][0])
            out = folder / "adapter"
            store = folder / "store"
            trained = workbench.train(recipe, out, store=store)
            evaluated = workbench.evaluate(str(out), suite="contacts", limit=2, store=store, progress=False)
            made[method] = {"out": out, "store": store, "trained": trained, "eval": evaluated.run, "folder": folder}
        return made[method]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("method", list(TRAINED))
def test_each_method_trains_an_adapter_that_evaluates_and_merges(method, trained):
    from workbench.checkpoints.resolve import resolve_checkpoint

    run = trained(method)
    ckpt = resolve_checkpoint(run["out"])
    parent = ckpt.parent
    assert ckpt.kind == "adapter" and run["trained"].steps == 3
    assert parent["method"] == ("sft" if method == "qlora" else method)
    assert Path(parent["train_data"]).name == TRAINED[method][1] and len(parent["train_data_sha"]) == 64
    assert parent["base"] == "default" and parent["peft_type"] == "lora"
    if method in ("kto",):  # each preference pair gave a desirable and an undesirable row
        assert parent["n_examples"] == 2 * parent["n_train"]
    if method == "grpo":
        assert parent["reward"]["suite"] == "contacts" and parent["reward"]["scorer"] == "json_fields"

    metrics = {(m["task"], m["metric"]): m for m in run["eval"].metrics}
    assert metrics[("contacts", "json_fields")]["n"] == 2
    assert 0.0 <= metrics[("contacts", "json_fields")]["value"] <= 1.0

    merged = workbench.merge(run["out"], run["folder"] / "merged", store=run["store"]).merged
    merged_ckpt = resolve_checkpoint(merged)
    assert merged_ckpt.kind == "merged" and merged_ckpt.parent["adapter_sha"] == ckpt.sha


@pytest.mark.slow
@pytest.mark.parametrize("method", list(TRAINED))
def test_each_methods_adapter_changes_the_models_outputs(method, trained):
    import torch

    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.runtimes.hf import load_model, load_tokenizer

    ckpt = resolve_checkpoint(trained(method)["out"])
    tokenizer = load_tokenizer(ckpt)
    model = load_model(ckpt)
    ids = tokenizer.apply_chat_template(PROBE, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        tuned = model(**ids).logits
        with model.disable_adapter():
            base = model(**ids).logits
    assert (tuned - base).abs().max().item() > 1e-3


@pytest.mark.slow
def test_a_qlora_adapter_is_evaluated_on_its_4bit_base(trained):
    import bitsandbytes as bnb

    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.runtimes.hf import load_model
    from workbench.store import Store

    run = trained("qlora")
    ckpt = resolve_checkpoint(run["out"])
    assert ckpt.parent["quantization"] == {"type": "nf4", "library": "bitsandbytes", "double_quant": True,
                                           "compute_dtype": "float32"}
    model = load_model(ckpt)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    full = load_model(ckpt, as_trained=False)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in full.modules())
    # lm-eval's regression slice runs on the same 4-bit base
    from workbench.runtimes.hf import HFRuntime

    lm = HFRuntime(ckpt).lm_eval_model(batch_size=1, device="cpu")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in lm.model.modules())
    # the `wb eval` run records the base it generated on
    manifest = Store(run["store"]).load(run["eval"].run_id).manifest
    assert manifest["base_quantization"]["type"] == "nf4"


# ---- every data format reaches the trainer in the shape the method reads (no model) -------------------------

def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_reads_each_conversation_format_with_the_last_answer_as_completion(tmp_path):
    want = {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello"}]}
    files = {
        "messages": [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}],
        "sharegpt": [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}],
        "alpaca": [{"instruction": "Hi", "output": "Hello"}],
        "prompt_completion": [{"prompt": "Hi", "completion": "Hello"}],
        "prompt": [{"prompt": "Hi", "reference": "Hello"}],  # wb's task items
    }
    for fmt, rows in files.items():
        detected, _, examples = method_rows("sft", _jsonl(tmp_path / f"{fmt}.jsonl", rows))
        assert detected == fmt and examples == [want]


def test_preference_unpaired_and_prompt_rows_for_their_methods(tmp_path):
    pref = _jsonl(tmp_path / "pref.jsonl", [{"prompt": "Q", "chosen": "good", "rejected": "bad"}])
    _, _, dpo = method_rows("dpo", pref)
    assert dpo == [{"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "good"}],
                    "rejected": [{"role": "assistant", "content": "bad"}]}]
    _, _, kto = method_rows("kto", pref)
    assert [(r["completion"][0]["content"], r["label"]) for r in kto] == [("good", True), ("bad", False)]
    unpaired = _jsonl(tmp_path / "kto.jsonl", [{"prompt": "Q", "completion": "meh", "label": False}])
    assert method_rows("kto", unpaired)[2] == [{"prompt": [{"role": "user", "content": "Q"}],
                                                "completion": [{"role": "assistant", "content": "meh"}], "label": False}]
    # a pair given as two whole conversations: their shared turns are the prompt
    convs = _jsonl(tmp_path / "convs.jsonl", [{
        "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}]}])
    assert method_rows("orpo", convs)[2] == dpo
    prompts = _jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Q", "reference": {"a": 1}}])
    assert method_rows("grpo", prompts)[2] == [{"prompt": [{"role": "user", "content": "Q"}], "reference": '{"a": 1}'}]
    _, _, from_items = method_rows("grpo", DATA / "contacts_train.jsonl")
    assert from_items[0]["reference"].startswith('{"name": ') and from_items[0]["prompt"][-1]["role"] == "user"


# ---- bad input: one line, exit 3 (4 for a missing package), checked before a model loads, nothing left -----

def _recipe(tmp_path: Path, data_rows: list | None = None, **fields) -> Path:
    data = _jsonl(tmp_path / "data.jsonl", data_rows or [
        {"messages": [{"role": "user", "content": "Hi"}], "reference": "Hello"}])
    raw = {"name": "bad", "train_data": data.name, **fields}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _prepare(path: Path):
    return prepare_training(load_yaml_model(path, TrainConfig), path)


def test_a_preference_file_missing_rejected_is_one_line_exit_3_and_nothing_is_written(tmp_path):
    path = _recipe(tmp_path, [{"prompt": "Q", "chosen": "good"}], method="dpo")
    out = tmp_path / "adapter"
    res = wb("train", str(path), "-o", str(out), env={"WB_STORE": str(tmp_path / "store")})
    assert res.returncode == 3 and res.stderr.count("\n") == 1, res.stderr
    assert "data.jsonl:1: rejected: missing" in res.stderr
    assert not out.exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize("fields, needle", [
    ({"peft": {"type": "lora", "lora_alhpa": 8}}, "peft.lora_alhpa: not a field of PEFT's LoraConfig; did you mean lora_alpha"),
    ({"peft": {"type": "lorra"}}, "peft.type: 'lorra' is not a PEFT method (did you mean lora"),
    ({"peft": {"type": "ia3", "r": 8}}, "peft.r: not a field of PEFT's IA3Config"),
    ({"peft": {"type": "loftq"}}, "peft (LoraConfig): `loftq_config` must be specified"),
    ({"method_args": {"betta": 0.1}}, "method_args.betta: not a field of TRL's SFTConfig"),
    ({"method_args": {"max_steps": 3}}, "method_args.max_steps: set it under 'training:'"),
    ({"method": "dpo"}, "method dpo trains on preference rows (prompt/chosen/rejected); this file holds messages rows"),
    ({"method": "grpo", "reward": {"suite": "contacts", "scorer": "json_feilds"}},
     "reward.scorer: task 'contacts' has no scorer 'json_feilds' (it has exact, json_valid, json_fields)"),
    ({"method": "grpo", "reward": {"suite": "contacts", "task": "nope"}}, "reward.task: suite 'contacts' has no task 'nope'"),
    ({"method": "grpo", "reward": {"suite": "no-such-suite"}}, "reward.suite: suite 'no-such-suite': not found"),
    ({"data_format": "chatml"}, "data_format: 'chatml' (choose from messages"),
    ({"training": {"loraplus_lr_ratio": 16, "optim": "adafactor"}}, "LoRA+ builds its own AdamW"),
])
def test_bad_recipes_name_the_key_before_a_model_loads(tmp_path, fields, needle):
    path = _recipe(tmp_path, **fields)
    with pytest.raises(BadInput) as info:
        _prepare(path)
    message = str(info.value)
    assert needle in message and "\n" not in message, message


def test_a_bad_row_is_named_by_file_line_and_field(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]},
            {"conversations": [{"from": "robot", "value": "Hi"}]}]
    with pytest.raises(BadInput, match=r"data.jsonl:2: conversations.0: expected"):
        _prepare(_recipe(tmp_path, rows))
    with pytest.raises(BadInput, match=r"data.jsonl:1: label: expected true or false"):
        _prepare(_recipe(tmp_path, [{"prompt": "Q", "completion": "A", "label": "yes"}], method="kto"))
    with pytest.raises(BadInput, match=r"data.jsonl:1: reference: missing \(the reward scorer 'json_fields'"):
        _prepare(_recipe(tmp_path, [{"prompt": "Q"}], method="grpo",
                         reward={"suite": "contacts", "scorer": "json_fields"}))


def test_a_missing_package_is_exit_4_naming_what_to_install(tmp_path):
    path = _recipe(tmp_path, quantization="nf4")
    hide = ("import sys; sys.modules['bitsandbytes'] = None; sys.argv = ['wb', 'train', sys.argv[1], '-o', sys.argv[2]]\n"
            "from workbench.cli.main import run; run()")
    res = subprocess.run([sys.executable, "-c", hide, str(path), str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "WB_STORE": str(tmp_path / "store")})
    assert res.returncode == 4 and res.stderr.count("\n") == 1, res.stderr
    assert "needs bitsandbytes: pip install 'ckpt-workbench[qlora]'" in res.stderr
    assert not (tmp_path / "out").exists()


def test_galore_without_its_package_is_an_environment_problem(tmp_path):
    from workbench.errors import EnvironmentProblem
    from workbench.system.extras import available

    if available("galore_torch"):
        pytest.skip("galore-torch is installed here, so its missing-package message cannot be shown")
    galore = _recipe(tmp_path, training={"optim": "galore_adamw", "optim_target_modules": ["q_proj"]})
    with pytest.raises(EnvironmentProblem, match="galore_adamw needs the galore-torch package"):
        _prepare(galore)


# ---- PEFT types and LoRA+ on the tiny Llama (seconds each) ----------------------------------------------------

def _tiny_recipe(tmp_path: Path, base: Path, **fields) -> tuple[TrainConfig, Path]:
    rows = [{"messages": [{"role": "user", "content": f"Say {i}."}], "reference": f"{i}"} for i in range(8)]
    _jsonl(tmp_path / "train.jsonl", rows)
    training = {"max_steps": 2, "batch_size": 4, "logging_steps": 1, "max_length": 64, "learning_rate": 1e-2,
                "warmup_ratio": 0.0, **fields.pop("training", {})}
    cfg = TrainConfig(name="tiny", base=str(base), train_data="train.jsonl", training=training, **fields)
    return cfg, tmp_path / "recipe.yaml"


@pytest.mark.parametrize("peft", [
    {"type": "dora", "r": 4, "lora_alpha": 8},
    {"type": "rslora", "r": 4},
    {"type": "ia3"},
    {"type": "vera", "r": 16, "target_modules": ["q_proj", "o_proj"]},
    {"type": "adalora", "init_r": 6, "target_r": 2, "tinit": 0, "tfinal": 0, "deltaT": 1},
    {"type": "oft", "oft_block_size": 16, "target_modules": ["q_proj", "o_proj"]},
    {"type": "loha", "r": 4, "target_modules": ["q_proj", "v_proj"]},
], ids=lambda p: p["type"])
def test_peft_types_train_and_change_the_outputs(tmp_path, tiny_model_dir, peft):
    import torch

    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.runtimes.hf import load_model
    from workbench.train.recipe import train_adapter

    cfg, path = _tiny_recipe(tmp_path, tiny_model_dir, peft=peft)
    train_adapter(cfg, path, tmp_path / "adapter")
    ckpt = resolve_checkpoint(tmp_path / "adapter")
    expected = {"dora": "lora", "rslora": "lora"}.get(peft["type"], peft["type"])
    assert ckpt.parent["peft_type"] == expected and ckpt.parent["peft"] == peft
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"].lower() == expected
    model = load_model(ckpt)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        tuned = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    assert (tuned - base).abs().max().item() > 1e-4


def test_loraplus_gives_lora_b_the_larger_learning_rate(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    from workbench.train.recipe import train_adapter

    norms = {}
    for ratio in (None, 16.0):
        folder = tmp_path / str(ratio)
        folder.mkdir()
        cfg, path = _tiny_recipe(folder, tiny_model_dir, training={"loraplus_lr_ratio": ratio, "learning_rate": 1e-4},
                                 lora={"r": 4, "alpha": 8, "dropout": 0.0})
        train_adapter(cfg, path, folder / "adapter")
        weights = load_file(folder / "adapter" / "adapter_model.safetensors")
        norms[ratio] = sum(float(v.abs().sum()) for k, v in weights.items() if "lora_B" in k)
    # B starts at zero and Adam moves each weight about lr per step: with LoRA+ about 16x as far
    assert norms[16.0] > 8 * norms[None] > 0


def test_a_trl_config_value_error_is_one_line_after_the_heavy_imports(tmp_path):
    path = _recipe(tmp_path, [{"prompt": "Q", "reference": "A"}], method="grpo",
                   reward={"suite": "contacts", "scorer": "exact"}, method_args={"num_generations": 3},
                   training={"batch_size": 2})
    res = wb("train", str(path), "-o", str(tmp_path / "out"), env={"WB_STORE": str(tmp_path / "store")})
    assert res.returncode == 3 and res.stderr.count("\n") == 1, res.stderr
    assert "method_args (GRPOConfig):" in res.stderr and "num_generations" in res.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()

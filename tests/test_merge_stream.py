"""The streaming merge against PEFT's own merge_and_unload, tensor for tensor, and its bad inputs."""

import json
from pathlib import Path

import pytest
import torch
from hostile_support import SmallDisk, run_cli

from workbench.checkpoints.lora_plan import INDEX_NAME, plan_merge
from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.errors import BadInput
from workbench.merge.stream import HOW, choose_method, merge_streaming


def _resave_sharded(src, out: Path, max_shard_size: str, **config_changes) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype="auto")
    for key, value in config_changes.items():
        setattr(model.config, key, value)
    if config_changes.get("tie_word_embeddings") is False:  # untie: lm_head gets a weight of its own
        model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone() * 0.5)
    model.save_pretrained(str(out), max_shard_size=max_shard_size)
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return out


def _adapter(base: Path, out: Path, **lora) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    config = LoraConfig(init_lora_weights=False, task_type="CAUSAL_LM", **lora)  # non-zero B: a real change
    get_peft_model(model, config).save_pretrained(str(out))
    return out


def _peft_merged(base: Path, adapter: Path) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    return {k: v.detach().clone() for k, v in PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            .state_dict().items()}


def _saved(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def assert_equals_peft(out: Path, base: Path, adapter: Path) -> None:
    streamed, reference, original = _saved(out), _peft_merged(base, adapter), _saved(base)
    assert set(streamed) == set(original)
    changed = [k for k in streamed if not torch.equal(streamed[k], original[k])]
    assert changed, "the merge changed no tensor"
    for key, tensor in streamed.items():
        assert tensor.dtype == reference[key].dtype and torch.equal(tensor, reference[key]), key


@pytest.fixture(scope="module")
def sharded_tiny(module_tmp, tiny_model_dir):
    out = _resave_sharded(tiny_model_dir, module_tmp("tiny-sharded"), "100KB")
    assert len(set(json.loads((out / INDEX_NAME).read_text())["weight_map"].values())) >= 4
    return out


@pytest.fixture(scope="module")
def sharded_untied(module_tmp, tiny_model_dir):
    """Untied: lm_head has its own weight, for modules_to_save."""
    return _resave_sharded(tiny_model_dir, module_tmp("tiny-untied"), "100KB", tie_word_embeddings=False)


@pytest.fixture(scope="module")
def tiny_lora(module_tmp, sharded_tiny):
    return _adapter(sharded_tiny, module_tmp("lora"), r=4, lora_alpha=8, target_modules="all-linear")


def test_streaming_equals_peft_merge_on_a_sharded_tiny_model(tmp_path, sharded_tiny, tiny_lora):
    adapter = resolve_checkpoint(tiny_lora)
    plan = plan_merge(adapter)
    assert plan.sharded and not plan.unsupported and choose_method(plan, None) == ("streaming", None)
    merged, report = merge_streaming(adapter, tmp_path / "merged", plan=plan)
    assert_equals_peft(tmp_path / "merged", sharded_tiny, tiny_lora)
    assert report.shards == len(plan.shards) and report.tensors_merged == 2 * 7  # 2 layers x 7 linear modules
    assert report.check == "logits" and report.logits.max_abs_logit_diff < 1e-4  # small float32 model: auto
    reloaded = resolve_checkpoint(tmp_path / "merged")
    assert reloaded.kind == "merged" and reloaded.parent["how"] == HOW
    assert reloaded.parent["adapter_sha"] == adapter.sha and reloaded.parent["base_sha"] == adapter.base_checkpoint.sha
    for name in ("config.json", "generation_config.json", INDEX_NAME, "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "merged" / name).is_file(), name
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_rslora_rank_and_alpha_patterns_and_an_embedding_lora(tmp_path, sharded_untied):
    adapter_dir = _adapter(sharded_untied, tmp_path / "adapter", r=4, lora_alpha=16, use_rslora=True,
                           target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
                           rank_pattern={"v_proj": 2, "layers.1.self_attn.q_proj": 8}, alpha_pattern={"down_proj": 3})
    plan = plan_merge(resolve_checkpoint(adapter_dir))
    assert plan.deltas["model.layers.1.self_attn.q_proj.weight"].scaling == 16 / 8 ** 0.5
    assert plan.deltas["model.layers.0.mlp.down_proj.weight"].scaling == 3 / 2
    assert plan.deltas["model.embed_tokens.weight"].kind == "embedding"
    merge_streaming(resolve_checkpoint(adapter_dir), tmp_path / "merged", check="structure")
    assert_equals_peft(tmp_path / "merged", sharded_untied, adapter_dir)


def test_fan_in_fan_out_on_gpt2_conv1d(tmp_path):
    """GPT-2's Conv1D keeps its weight as (in, out): PEFT merges the transposed delta."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    base = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=64)).save_pretrained(
        str(base), max_shard_size="100KB")
    adapter_dir = _adapter(base, tmp_path / "adapter", r=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)
    _, report = merge_streaming(resolve_checkpoint(adapter_dir), tmp_path / "merged", check="structure")
    assert report.shards > 1 and report.tensors_merged == 4
    assert_equals_peft(tmp_path / "merged", base, adapter_dir)


def test_modules_to_save_replace_the_base_tensors(tmp_path, sharded_untied):
    adapter_dir = _adapter(sharded_untied, tmp_path / "adapter", r=2, target_modules=["q_proj"],
                           modules_to_save=["lm_head"])
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(sharded_untied)), str(adapter_dir))
    with torch.no_grad():  # a trained copy differs from the base's lm_head
        trained.base_model.model.lm_head.modules_to_save["default"].weight.mul_(-1.0)
    trained.save_pretrained(str(adapter_dir))
    _, report = merge_streaming(resolve_checkpoint(adapter_dir), tmp_path / "merged")
    assert report.tensors_replaced == 1
    assert_equals_peft(tmp_path / "merged", sharded_untied, adapter_dir)
    assert torch.equal(_saved(tmp_path / "merged")["lm_head.weight"], -_saved(sharded_untied)["lm_head.weight"])


def test_streaming_equals_peft_merge_on_the_default_model_in_four_shards(tmp_path, default_ckpt):
    base = _resave_sharded(default_ckpt.path, tmp_path / "base", "150MB")
    assert len(set(json.loads((base / INDEX_NAME).read_text())["weight_map"].values())) >= 4
    adapter_dir = _adapter(base, tmp_path / "adapter", r=8, lora_alpha=16, target_modules="all-linear")
    _, report = merge_streaming(resolve_checkpoint(adapter_dir), tmp_path / "merged", check="structure")
    assert report.shards >= 4 and report.tensors_merged == 30 * 7
    assert_equals_peft(tmp_path / "merged", base, adapter_dir)


def test_a_single_file_base_merges_in_memory_unless_streaming_is_asked(tmp_path, tiny_model_dir):
    adapter_dir = _adapter(tiny_model_dir, tmp_path / "adapter", r=2, target_modules=["q_proj", "o_proj"])
    plan = plan_merge(resolve_checkpoint(adapter_dir))
    assert not plan.sharded and choose_method(plan, None) == ("in-memory", None)
    assert choose_method(plan, True) == ("streaming", None)
    merge_streaming(resolve_checkpoint(adapter_dir), tmp_path / "merged", plan=plan)
    assert_equals_peft(tmp_path / "merged", tiny_model_dir, adapter_dir)


def test_unsupported_adapters_fall_back_in_memory_unless_streaming_is_forced(tmp_path, sharded_tiny):
    adapter_dir = _adapter(sharded_tiny, tmp_path / "dora", r=2, target_modules=["q_proj"], use_dora=True)
    plan = plan_merge(resolve_checkpoint(adapter_dir))
    method, note = choose_method(plan, None)
    assert method == "in-memory" and "use_dora" in note
    with pytest.raises(BadInput, match="--streaming cannot merge .*use_dora.*--in-memory"):
        choose_method(plan, True)


# --- through the CLI -----------------------------------------------------------------------------------------

def test_wb_merge_streams_a_sharded_base_and_in_memory_on_request(tmp_path, capsys, monkeypatch, tiny_lora):
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    res = run_cli(["merge", tiny_lora, "-o", tmp_path / "streamed", "--json"], capsys)
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["method"] == "streaming" and summary["streaming"]["shards"] >= 4
    assert summary["max_abs_logit_diff"] < 1e-4
    assert json.loads((tmp_path / "streamed" / "wb_checkpoint.json").read_text())["parent"]["how"] == HOW
    res = run_cli(["merge", tiny_lora, "-o", tmp_path / "in-memory", "--in-memory", "--json"], capsys)
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["method"] == "in-memory"
    assert json.loads((tmp_path / "in-memory" / "wb_checkpoint.json").read_text())["parent"]["how"] == \
        "peft merge_and_unload"


def test_wb_merge_of_a_dora_adapter_on_a_sharded_base_says_why_it_merges_in_memory(tmp_path, capsys, monkeypatch,
                                                                                   sharded_tiny):
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    adapter_dir = _adapter(sharded_tiny, tmp_path / "dora", r=2, target_modules=["q_proj"], use_dora=True)
    res = run_cli(["merge", adapter_dir, "-o", tmp_path / "merged", "--json"], capsys)
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["method"] == "in-memory"
    note = " ".join(res.stderr.split())
    assert "the streaming merge cannot do this adapter (it uses use_dora" in note and "merging in memory" in note
    _refused(run_cli(["merge", adapter_dir, "-o", tmp_path / "forced", "--streaming"], capsys), "use_dora",
             "--in-memory")
    assert not (tmp_path / "forced").exists()


def _refused(res, *needles, after_progress: bool = False, code: int = 3):
    """Exit 3 (4: the machine's problem), one line of error; a refusal while writing may follow the progress
    lines of the shards written."""
    assert res.code == code, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    if after_progress:
        lines = [line for line in lines if not line.startswith(("merging shards", "checking shards"))]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_an_adapter_for_another_base_is_refused_from_the_headers(tmp_path, capsys, monkeypatch, sharded_tiny):
    """A LoRA made on a wider model, pointing at the tiny base. The base's shards are cut after their headers: a
    merge that loaded any weight would fail on them, so the shape error shows the check read headers only."""
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    headers_only = tmp_path / "base"
    headers_only.mkdir()
    for f in sharded_tiny.iterdir():
        data = f.read_bytes()
        if f.suffix == ".safetensors":
            data = data[: 8 + int.from_bytes(data[:8], "little")]
        (headers_only / f.name).write_bytes(data)
    wide = tmp_path / "wide"
    LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=96, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(str(wide))
    adapter_dir = _adapter(wide, tmp_path / "adapter", r=2, target_modules=["q_proj"])
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(headers_only)
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(BadInput, match=r"does not fit base .*q_proj.weight' is 64x64 in the base.*96x96"):
        plan_merge(resolve_checkpoint(adapter_dir, with_sha=False))
    config["base_model_name_or_path"] = str(sharded_tiny)
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    res = run_cli(["merge", adapter_dir, "-o", tmp_path / "merged"], capsys)
    _refused(res, "does not fit base", "q_proj")
    assert not (tmp_path / "merged").exists()


def test_a_merge_into_a_non_empty_folder_is_refused(tmp_path, capsys, monkeypatch, tiny_lora):
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    _refused(run_cli(["merge", tiny_lora, "-o", tmp_path / "busy"], capsys), "busy", "not empty")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    with pytest.raises(BadInput, match="not empty"):
        merge_streaming(resolve_checkpoint(tiny_lora), tmp_path / "busy")


def test_a_disk_that_fills_during_the_write(tmp_path, capsys, monkeypatch, tiny_lora, sharded_tiny):
    """A real full disk: a 2 MiB tmpfs (the tiny model is about 13 MB) holds the output folder."""
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    disk = SmallDisk(tmp_path / "disk", "2m")
    try:
        out = disk.path / "merged"
        _refused(run_cli(["merge", tiny_lora, "-o", out], capsys), "no space left", str(out), "free some space",
                 after_progress=True, code=4)  # a full disk is the machine's problem: workbench.system.failures.no_space
        assert list(disk.path.iterdir()) == []  # nothing published, the staging folder removed
    finally:
        disk.close()

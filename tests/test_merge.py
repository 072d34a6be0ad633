import pytest
import torch

from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.errors import BadInput
from workbench.merge.lora import merge_adapter


@pytest.fixture
def tiny_adapter(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  init_lora_weights=False))  # non-zero B: the merge changes weights
    path = tmp_path / "adapter"
    peft_model.save_pretrained(path)
    return resolve_checkpoint(path)


def test_merged_logits_match_base_plus_adapter(tmp_path, tiny_adapter, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    merged, report = merge_adapter(tiny_adapter, tmp_path / "merged")
    assert report.ok and report.max_abs_logit_diff < 1e-4 and report.argmax_agreement == 1.0
    assert report.probe_tokens > 20
    reloaded = resolve_checkpoint(tmp_path / "merged")
    assert reloaded.kind == "merged" and reloaded.parent["adapter_sha"] == tiny_adapter.sha
    assert (tmp_path / "merged" / "tokenizer_config.json").exists()
    # The merge really changed the weights: merged != base.
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(ids).logits
    assert (base - after).abs().max() > 1e-3


def test_merge_refuses_a_non_adapter_and_a_non_empty_output(tmp_path, tiny_adapter, tiny_model_dir):
    with pytest.raises(BadInput, match="not an adapter"):
        merge_adapter(resolve_checkpoint(tiny_model_dir), tmp_path / "m")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(BadInput, match="not empty"):
        merge_adapter(tiny_adapter, tmp_path / "busy")


def test_merge_check_failure_writes_nothing(tmp_path, tiny_adapter):
    with pytest.raises(BadInput, match="merge check failed"):
        merge_adapter(tiny_adapter, tmp_path / "merged", tolerance=-1.0)
    assert not (tmp_path / "merged").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".merged")]


def test_the_api_merges_records_the_run_and_returns_what_wb_merge_json_prints(tmp_path, tiny_adapter):
    import workbench
    from workbench.store import Store

    result = workbench.merge(tiny_adapter.path, tmp_path / "merged", store=tmp_path / "store")
    assert result.method == "in-memory" and result.merged == (tmp_path / "merged").resolve()
    assert result.check["max_abs_logit_diff"] < 1e-4 and result.streaming is None
    summary = result.to_dict()
    assert list(summary)[:3] == ["run_id", "merged", "method"] and summary["argmax_agreement"] == 1.0
    run = Store(tmp_path / "store").load(result.run_id)
    assert (run.manifest["kind"], run.manifest["status"], run.manifest["command"]) == ("merge", "ok", "workbench.merge")
    assert run.metric("merge_check", "max_abs_logit_diff")["value"] == result.check["max_abs_logit_diff"]
    with pytest.raises(BadInput, match="--method is needed to combine 2 adapters"):
        workbench.merge([tiny_adapter.path, tiny_adapter.path], tmp_path / "two")
    assert not (tmp_path / "two").exists()

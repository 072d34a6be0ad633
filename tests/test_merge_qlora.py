"""QLoRA-aware merges (`wb merge --into fp|dequantized`) on a tiny model trained a few steps on its NF4 base."""

import json

import pytest
import torch
from hostile_support import run_cli

from workbench.checkpoints.quantization import load_quantized, quantization_record
from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.config import TrainConfig
from workbench.errors import BadInput
from workbench.merge.lora import merge_adapter
from workbench.merge.qlora import (
    DEFAULT_TARGET,
    distribution_cost,
    merge_target,
    params4bit_settings,
    quantized_linears,
    round_trip,
)
from workbench.merge.stream import merge_streaming

pytest.importorskip("bitsandbytes")
TEXTS = ["Extract the contact: Hi, I'm Bo Lee, 40, from Oslo. bo@example.net",
         "Question: What is 7 times 8?\nAnswer: 56", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def qlora_adapter(module_tmp, tiny_model_dir):
    """An adapter really trained (3 steps, a high learning rate so it moves) on the tiny model's NF4 base."""
    from workbench.train.recipe import train_adapter

    work = module_tmp("qlora")
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"Say {i}."}], "reference": f"{i}"}
            for i in range(16)]
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(name="tiny-qlora", base=str(tiny_model_dir), train_data="train.jsonl", quantization="nf4",
                      peft={"type": "lora", "r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
                      training={"max_steps": 3, "batch_size": 4, "logging_steps": 1, "max_length": 64,
                                "learning_rate": 2e-2})
    ckpt, _ = train_adapter(cfg, work / "recipe.yaml", work / "adapter")
    return resolve_checkpoint(ckpt.path)


@pytest.fixture
def plain_adapter(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(model, LoraConfig(r=4, target_modules="all-linear")).save_pretrained(tmp_path / "plain")
    return tmp_path / "plain"


@pytest.mark.parametrize("kind,precision", [("nf4", "fp32"), ("fp4", "fp32"), ("nf4", "bf16")])
def test_round_trip_is_what_bitsandbytes_linear4bit_holds(tiny_model_dir, kind, precision):
    """For every module transformers turned into a Linear4bit, the round trip of the full-precision weight equals,
    bit for bit, bitsandbytes' dequantization of the Params4bit that a BitsAndBytesConfig load produced."""
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    record = quantization_record(kind, precision)
    settings = params4bit_settings(record)
    quantized = load_quantized(tiny_model_dir, record)
    full = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    linears = quantized_linears(full, settings)
    loaded4 = {n for n, m in quantized.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert set(linears) == loaded4 and len(loaded4) == 14  # 7 per layer; lm_head (tied) stays
    assert "lm_head" not in linears
    for name in linears:
        param = quantized.get_submodule(name).weight
        expected = bnb.functional.dequantize_4bit(param.data, param.quant_state)
        got = round_trip(full.get_submodule(name).weight.data, settings)
        assert got.dtype == torch.float32
        assert torch.equal(got, expected.to(torch.float32)), (name, float((got - expected).abs().max()))


def _logits(model, tokenizer):
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits.float()
    return logits[batch["attention_mask"].bool()]


def test_dequantized_merge_is_closer_to_the_4bit_adapter_than_fp(tmp_path, qlora_adapter):
    from transformers import AutoModelForCausalLM

    from workbench.merge.probe import probe_tokenizer
    from workbench.runtimes.hf import load_model

    tokenizer = probe_tokenizer(qlora_adapter)
    reference = _logits(load_model(qlora_adapter), tokenizer)  # the adapter on its NF4 base, as trained
    costs = {}
    for target in ("fp", "dequantized"):
        merged, report = merge_adapter(qlora_adapter, tmp_path / target, into=target)
        assert report.ok
        note = resolve_checkpoint(tmp_path / target).parent["merge"]
        assert note["into"] == target and merged.parent["trained_on_quantization"]["type"] == "nf4"
        model = AutoModelForCausalLM.from_pretrained(str(tmp_path / target), dtype=torch.float32)
        costs[target] = distribution_cost(reference, _logits(model, tokenizer))
    print({t: c.__dict__ for t, c in costs.items()})
    assert costs["dequantized"].kl < costs["fp"].kl / 100
    assert costs["dequantized"].kl < 1e-5 and costs["dequantized"].top1 == 1.0
    assert costs["fp"].kl > 1e-4  # the 4-bit rounding is visible in a real fp merge


def test_default_target_and_lineage(tmp_path, qlora_adapter, plain_adapter):
    assert merge_target(qlora_adapter, None) == DEFAULT_TARGET
    assert merge_target(resolve_checkpoint(plain_adapter), None) == "fp"
    merged, _ = merge_adapter(qlora_adapter, tmp_path / "m")
    parent = resolve_checkpoint(tmp_path / "m").parent
    assert parent["merge"]["into"] == DEFAULT_TARGET and parent["trained_on_quantization"]["type"] == "nf4"
    cost = parent["merge"]["vs_quantized_adapter"]
    assert abs(cost["kl"]) < 1e-5 and cost["top1"] == 1.0 and cost["tokens"] > 20
    plain, _ = merge_adapter(resolve_checkpoint(plain_adapter), tmp_path / "p")
    assert "merge" not in plain.parent and "trained_on_quantization" not in plain.parent


def test_streaming_dequantized_equals_in_memory(tmp_path, qlora_adapter):
    from safetensors.torch import load_file

    merge_adapter(qlora_adapter, tmp_path / "mem", into="dequantized")
    ckpt, report = merge_streaming(qlora_adapter, tmp_path / "stream", into="dequantized", check="logits")
    assert report.tensors_dequantized == 14 and report.logits.ok
    assert ckpt.parent["merge"]["into"] == "dequantized" and ckpt.parent["merge"]["vs_quantized_adapter"]["kl"] < 1e-5
    mem, stream = load_file(tmp_path / "mem" / "model.safetensors"), load_file(tmp_path / "stream" /
                                                                                "model.safetensors")
    for name, tensor in stream.items():
        assert torch.equal(tensor, mem[name]), name


def test_bad_targets_are_one_line_exit_3(tmp_path, capsys, monkeypatch, plain_adapter, qlora_adapter):
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    for adapter, into, needle in ((plain_adapter, "dequantized", "full-precision base"),
                                  (qlora_adapter.path, "nf4", "--into must be one of fp, dequantized")):
        res = run_cli(["merge", adapter, "-o", tmp_path / "out", "--into", into], capsys)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.code == 3 and len(lines) == 1 and needle in lines[0], res.stderr
        assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
    res = run_cli(["merge", qlora_adapter.path, plain_adapter, "--method", "linear", "--into", "fp", "-o",
                   tmp_path / "out"], capsys)
    assert res.code == 3 and "--into applies to one adapter" in res.stderr and not (tmp_path / "out").exists()
    with pytest.raises(BadInput, match="int8 base"):
        ckpt = resolve_checkpoint(qlora_adapter.path)
        ckpt.parent = {**ckpt.parent, "quantization": quantization_record("int8", "fp32")}
        merge_target(ckpt, "dequantized")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_cli_reports_the_target_and_its_cost(tmp_path, capsys, monkeypatch, qlora_adapter):
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    res = run_cli(["merge", qlora_adapter.path, "-o", tmp_path / "m"], capsys)
    assert res.code == 0, res.stderr
    text = " ".join(res.stderr.split())  # the line may be wrapped to the terminal's width
    assert "trained on a nf4 base; merged into dequantized: vs the adapter on its nf4 base, KL" in text, text
    assert "top-1 agreement 1.0000 over" in text, text
    res = run_cli(["merge", qlora_adapter.path, "-o", tmp_path / "f", "--into", "fp", "--json"], capsys)
    summary = json.loads(res.stdout)
    assert res.code == 0 and summary["into"] == "fp" and summary["vs_quantized_adapter"]["kl"] > 1e-6  # measured 8.5e-5 here; dequantized ~1e-11

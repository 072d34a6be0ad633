import json

import pytest

from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.config import TrainConfig
from workbench.errors import BadInput
from workbench.train.recipe import train_adapter


def _config(tmp_path, base, steps=3):
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"Say {i}."}], "reference": f"{i}"}
            for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(name="tiny-lora", base=str(base), train_data="train.jsonl",
                      training={"max_steps": steps, "batch_size": 4, "logging_steps": 1, "max_length": 64})
    return cfg, tmp_path / "recipe.yaml"


def test_sft_trains_a_lora_adapter_with_lineage(tmp_path, tiny_model_dir):
    cfg, path = _config(tmp_path, tiny_model_dir)
    ckpt, log = train_adapter(cfg, path, tmp_path / "adapter")
    assert [row["step"] for row in log] == [1, 2, 3]
    assert all(row["loss"] > 0 for row in log)
    reloaded = resolve_checkpoint(tmp_path / "adapter")
    assert reloaded.kind == "adapter" and reloaded.format == "peft"
    assert reloaded.parent["base_path"] == str(tiny_model_dir.resolve())
    assert reloaded.parent["n_train"] == 16 and reloaded.sha == ckpt.sha
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".adapter-")]


def test_sft_lowers_the_loss_on_its_data(tmp_path, tiny_model_dir):
    cfg, path = _config(tmp_path, tiny_model_dir, steps=12)
    cfg.training.learning_rate = 5e-3
    _, log = train_adapter(cfg, path, tmp_path / "adapter")
    assert log[-1]["loss"] < log[0]["loss"]


def test_bad_train_data_fails_before_training(tmp_path, tiny_model_dir):
    cfg, path = _config(tmp_path, tiny_model_dir)
    (tmp_path / "train.jsonl").write_text('{"messages": "oops", "reference": "x"}\n')
    with pytest.raises(BadInput, match="train.jsonl:1: messages"):
        train_adapter(cfg, path, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()

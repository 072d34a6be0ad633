"""LoRA adapters of the default model with random (not zero) B, so each answers its own way: the benches' units."""

import json
from pathlib import Path


def random_adapters(workdir: Path, seeds, *, base_ref: str | None = None) -> list[Path]:
    """One adapter folder per seed under workdir (kept from an earlier run); `base_ref` replaces the base path
    in adapter_config.json (e.g. 'default')."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from workbench.checkpoints.resolve import resolve_checkpoint

    base = resolve_checkpoint("default")
    paths = []
    for seed in seeds:
        out = workdir / f"adapter-{seed}"
        paths.append(out)
        if (out / "adapter_config.json").exists():
            continue
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(str(base.path))
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(model, lora).save_pretrained(str(out))
        if base_ref:
            config = json.loads((out / "adapter_config.json").read_text())
            config["base_model_name_or_path"] = base_ref
            (out / "adapter_config.json").write_text(json.dumps(config))
    return paths

"""Adapter-only GGUF: a LoRA adapter converted with llama.cpp's convert_lora_to_gguf.py, next to its base model
as GGUF, so several fine-tunes can be served on one base (Ollama: FROM base + ADAPTER lora).

Verification (gguf_verify) loads base + adapter in llama.cpp and compares it with the merged export of the
same quant type and with the source adapter under transformers.
"""

from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.errors import BadInput

LORA_OUTTYPE = "f16"


def check_adapter(ckpt: Checkpoint) -> None:
    if ckpt.kind != "adapter":
        raise BadInput(f"checkpoint '{ckpt.path}': --adapter-gguf needs a PEFT LoRA adapter, not a {ckpt.kind} model")
    try:
        import json

        config = json.loads((ckpt.path / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{ckpt.path / 'adapter_config.json'}: unreadable ({exc})") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise BadInput(f"{ckpt.path / 'adapter_config.json'}: peft_type {config.get('peft_type')}: llama.cpp's "
                       "converter takes LoRA adapters only")
    if config.get("use_dora"):
        raise BadInput(f"{ckpt.path / 'adapter_config.json'}: DoRA adapters are not supported by llama.cpp's LoRA "
                       "converter; export the merged model instead (without --adapter-gguf)")


def build_adapter_files(ckpt: Checkpoint, base: Checkpoint, merged: dict[str, Checkpoint], tools, work: Path,
                        out: Path, steps, quantize, convert_base) -> list[Checkpoint]:
    """Base model GGUFs (one per quant type of the merged export) and the LoRA GGUF; returns their Checkpoints,
    the adapter's last. `convert_base(quant) -> Path` makes one base file (reusing one f16 conversion)."""
    from workbench.export.source import artifact_stem

    artifacts = []
    for quant, merged_art in merged.items():
        with steps.step(f"base model {base.path.name} as {quant}", f"base_{quant}"):
            path = convert_base(quant)
        artifacts.append(Checkpoint(
            path=path, name=path.stem, kind="quantized", format="gguf", sha=weights_sha(path),
            parent={"name": base.name, "path": str(base.path), "kind": "base", "quant": quant, "role": "adapter base",
                    "tool": "llama.cpp convert_hf_to_gguf + llama_model_quantize", "llama_cpp": tools.version},
            extra={"size_bytes": path.stat().st_size, "merged_counterpart": merged_art.path.name},
        ))
    lora = out / f"{artifact_stem(ckpt)}-LoRA-{LORA_OUTTYPE.upper()}.gguf"
    with steps.step("convert the LoRA adapter (llama.cpp convert_lora_to_gguf.py)", "convert_lora"):
        tools.convert_adapter(ckpt.path, base.path, lora, LORA_OUTTYPE, work / "convert-lora.log")
    first = artifacts[0]
    artifacts.append(Checkpoint(
        path=lora, name=lora.stem, kind="adapter", format="gguf", base=first.path.name, sha=weights_sha(lora),
        parent={"name": ckpt.name, "path": str(ckpt.path), "sha": ckpt.sha, "kind": "adapter", "quant": f"lora-{LORA_OUTTYPE}",
                "tool": "llama.cpp convert_lora_to_gguf", "llama_cpp": tools.version},
        extra={"size_bytes": lora.stat().st_size, "base_gguf": first.path.name,
               "merged_counterpart": merged[first.parent["quant"]].path.name},
    ))
    return artifacts

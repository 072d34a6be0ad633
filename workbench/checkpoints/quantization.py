"""A base model quantized through bitsandbytes (QLoRA): how training loads it, how lineage records it, and how
`wb eval` loads it again for an adapter trained on it, so the adapter is scored on the base it learned on."""

import re

from workbench.system.extras import require

DTYPE_OF_PRECISION = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def quantization_record(kind: str, precision: str) -> dict:
    """What lineage keeps: enough to build the same BitsAndBytesConfig on another machine."""
    if kind == "int8":
        return {"type": "int8", "library": "bitsandbytes"}
    # QLoRA's recipe: 4-bit weights (NF4 or FP4), their scales quantized again, matmuls in the compute dtype
    return {"type": kind, "library": "bitsandbytes", "double_quant": True,
            "compute_dtype": DTYPE_OF_PRECISION[precision]}


def require_bitsandbytes(kind: str):
    return require("bitsandbytes", f"quantization: {kind} (QLoRA)", "qlora")


def bnb_config(record: dict):
    """transformers' BitsAndBytesConfig for a quantization_record."""
    require_bitsandbytes(record["type"])
    torch = require("torch", "Loading a quantized base", "train")
    transformers = require("transformers", "Loading a quantized base", "eval")
    if record["type"] == "int8":
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=record["type"], bnb_4bit_use_double_quant=record["double_quant"],
        bnb_4bit_compute_dtype=getattr(torch, record["compute_dtype"]))


def quantization_of(ckpt) -> dict | None:
    """The quantization an adapter's base was trained under (None for a full-precision base)."""
    parent = ckpt.parent or {}
    return parent.get("quantization") if ckpt.kind == "adapter" else None


def load_quantized(path, record: dict, device: str = "cpu"):
    torch = require("torch", "Loading a quantized base", "train")
    transformers = require("transformers", "Loading a quantized base", "eval")
    dtype = getattr(torch, record.get("compute_dtype", "float32"))
    return transformers.AutoModelForCausalLM.from_pretrained(
        str(path), quantization_config=bnb_config(record), dtype=dtype, device_map=device)


_PREQUANTIZED_NAME = re.compile(r"^(?P<fp>.+?)(?:-unsloth)?-bnb-(?P<bits>4|8)bit$", re.IGNORECASE)


def prequantized_base(name: str | None) -> tuple[str, dict] | None:
    """(the full-precision base's name, the quantization record) when `name` is a hub repo of a base saved already
    quantized by bitsandbytes (Unsloth's naming: `unsloth/llama-3-8b-bnb-4bit` is `unsloth/llama-3-8b` in NF4,
    double quantization, bf16 compute); None for any other name."""
    m = _PREQUANTIZED_NAME.match(str(name or "").rstrip("/"))
    if not m:
        return None
    record = quantization_record("int8" if m.group("bits") == "8" else "nf4", "bf16")
    return m.group("fp"), {**record, "inferred_from": f"the base's name '{name}'"}


def is_4bit(record: dict | None) -> bool:
    return bool(record) and record["type"] in ("nf4", "fp4")


def params4bit_settings(record: dict) -> dict:
    """How bitsandbytes quantized each Linear weight of the base under `record`, read off a Linear4bit built the way
    transformers' replace_with_bnb_linear builds one from the same BitsAndBytesConfig (so bitsandbytes' own defaults,
    such as the blocksize, are the ones the training used)."""
    torch = require("torch", "Loading a quantized base", "train")
    bnb = require_bitsandbytes(record["type"])
    config = bnb_config(record)
    with torch.device("meta"):
        layer = bnb.nn.Linear4bit(64, 64, False, config.bnb_4bit_compute_dtype,
                                  compress_statistics=config.bnb_4bit_use_double_quant,
                                  quant_type=config.bnb_4bit_quant_type, quant_storage=config.bnb_4bit_quant_storage)
    w = layer.weight
    return {"blocksize": w.blocksize, "compress_statistics": w.compress_statistics, "quant_type": w.quant_type,
            "quant_storage": w.quant_storage, "compute_dtype": config.bnb_4bit_compute_dtype,
            "skip_modules": config.llm_int8_skip_modules}

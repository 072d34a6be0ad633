"""Loading resolved checkpoints into transformers: an HF folder, or base + PEFT adapter (unmerged)."""

from workbench.checkpoints.checkpoint import Checkpoint, require_base
from workbench.errors import BadInput
from workbench.system.extras import require


def load_tokenizer(ckpt: Checkpoint):
    return load_tokenizer_from(ckpt.tokenizer_source)


def load_tokenizer_from(folder):
    transformers = require("transformers", "Loading a tokenizer", "eval")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(ckpt: Checkpoint, *, dtype: str = "float32", device: str = "cpu", as_trained: bool = True,
               prepare_base=None):
    """A transformers causal LM for an HF checkpoint, or base + PEFT adapter (unmerged) for an adapter.

    An adapter trained on a quantized base (QLoRA) loads on that base quantized the same way, unless
    `as_trained=False` (the full-precision base: `wb merge --into fp`). A checkpoint
    evaluated during training carries the model being trained (derived["live_model"]) instead. `prepare_base`:
    called with a full-precision base before the adapter goes on it (wb merge --into dequantized rounds it)."""
    if "live_model" in ckpt.derived:
        return ckpt.derived["live_model"]
    if ckpt.format == "gguf":
        raise BadInput(f"checkpoint '{ckpt.path}': GGUF files run in llama.cpp, not transformers")
    torch = require("torch", "Loading a model", "eval")
    transformers = require("transformers", "Loading a model", "eval")
    torch_dtype = getattr(torch, dtype)
    if ckpt.kind == "adapter":
        peft = require("peft", "Loading an adapter", "train")
        from workbench.checkpoints.quantization import load_quantized, quantization_of

        quantization = quantization_of(ckpt) if as_trained else None
        if quantization:
            model = load_quantized(require_base(ckpt).path, quantization, device)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(str(require_base(ckpt).path), dtype=torch_dtype)
            if prepare_base:
                prepare_base(model)
        from workbench.checkpoints.adapter_vocab import resize_base_for

        resize_base_for(model, ckpt.path)  # an adapter that added tokens needs as many embedding rows
        model = peft.PeftModel.from_pretrained(model, str(ckpt.path))
        if quantization:  # bitsandbytes placed it already; .to() is refused for 4/8-bit weights
            model.eval()
            return model
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(ckpt.path), dtype=torch_dtype)
    model.to(device)
    model.eval()
    return model

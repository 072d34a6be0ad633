"""The one door through which heavy libraries are imported, inside the functions that need them."""

import contextlib
import importlib
import sys
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


@contextlib.contextmanager
def peft_without_gptqmodel():
    """PEFT wraps every layer after asking whether it is a GPTQModel (GPTQ/AWQ) layer, and asking imports
    GPTQModel whenever it is installed: its banner, a "Python GIL is enabled" warning and changes to the
    environment, in a LoRA training or merge with no GPTQ anywhere. A GPTQModel layer exists only if GPTQModel was
    imported to build it, so while it is not yet imported PEFT is told it is absent (a None entry in sys.modules is
    what importlib reads as "no such module"), and PEFT's cached answer is cleared afterwards."""
    if "gptqmodel" in sys.modules:
        yield
        return
    sys.modules["gptqmodel"] = None
    try:
        yield
    finally:
        if "gptqmodel" in sys.modules and sys.modules["gptqmodel"] is None:
            del sys.modules["gptqmodel"]
        peft_imports = sys.modules.get("peft.import_utils")
        if peft_imports is not None and hasattr(peft_imports.is_gptqmodel_available, "cache_clear"):
            peft_imports.is_gptqmodel_available.cache_clear()

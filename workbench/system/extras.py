"""The one door through which heavy libraries are imported, inside the functions that need them; and whether each
imports at all, tried in a child process (what `wb doctor` reports)."""

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
    "presidio_analyzer": "replay",
    "detect_secrets": "replay",
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


IMPORT_TIMEOUT_S = 120.0
_IMPORT_MARK = "wb-import "
# Run in a child interpreter: one line per module, as each import finishes (a crash or hang names the next one).
_IMPORT_CHILD = f"""
import importlib, importlib.util, json, sys
for module in sys.argv[1:]:
    error = None
    try:
        missing = importlib.util.find_spec(module) is None
    except BaseException:  # a parent package that fails to import: the import below says how
        missing = False
    if not missing:
        try:
            importlib.import_module(module)
        except BaseException as exc:
            lines = str(exc).strip().splitlines()
            error = type(exc).__name__ + (": " + lines[0] if lines else "")
    print({_IMPORT_MARK!r} + json.dumps({{"module": module, "missing": missing, "error": error}}), flush=True)
"""


def import_status(modules: list[str], timeout_s: float = IMPORT_TIMEOUT_S) -> dict[str, str]:
    """Each module imported in a child process, as require() would import it here: 'ok'; 'missing' (not installed:
    the extra's pip line is the fix); or 'broken: WHY' (installed, and importing it fails: an error it raises, one of
    its own imports missing, or a crash or hang of the interpreter, which the child keeps out of wb)."""
    import json
    import subprocess
    import sys

    status: dict[str, str] = {}
    left = list(dict.fromkeys(modules))
    while left:
        try:
            res = subprocess.run([sys.executable, "-c", _IMPORT_CHILD, *left], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=timeout_s, check=False)
            said, ended = res.stdout, f"the interpreter ended with status {res.returncode} while importing it"
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or ""
            said = out.decode(errors="replace") if isinstance(out, bytes) else out
            ended = f"importing it took over {timeout_s:.0f} s"
        for line in said.splitlines():
            if line.startswith(_IMPORT_MARK):
                record = json.loads(line[len(_IMPORT_MARK):])
                status[record["module"]] = ("missing" if record["missing"] else
                                            f"broken: {record['error']}" if record["error"] else "ok")
        left = [m for m in left if m not in status]
        if left:  # the first one not reported is the one the child died or hung on
            status[left.pop(0)] = f"broken: {ended}"
    return status


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

"""ckpt-workbench: evaluate, gate, merge and export fine-tuned LLM checkpoints.

The library API (docs/api.md); the `wb` command line calls the same functions:

    import workbench

    result = workbench.evaluate("out/adapter", suite="demo", baseline="default", gates="evals/gates/release.yaml")
    merged = workbench.merge("out/adapter", "out/merged")
    files = workbench.export("out/merged", "gguf", quants=["q8_0"], output="out/gguf")

Importing this package is cheap on purpose: no torch, transformers, lm_eval or llama_cpp until a function runs.
"""

import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module it lives in (loaded on first use)
_API = {
    "evaluate": "workbench.eval.pipeline",
    "EvalResult": "workbench.eval.pipeline",
    "train": "workbench.train.pipeline",
    "TrainResult": "workbench.train.pipeline",
    "merge": "workbench.merge.pipeline",
    "MergeResult": "workbench.merge.pipeline",
    "export": "workbench.export.pipeline",
    "ExportResult": "workbench.export.pipeline",
    "compare": "workbench.compare.runs",
    "Comparison": "workbench.compare.runs",
    "Checkpoint": "workbench.checkpoints.checkpoint",
    "Run": "workbench.store.runs",
    "Store": "workbench.store.runs",
}
__all__ = ["Checkpoint", "Comparison", "EvalResult", "ExportResult", "MergeResult", "Run", "Store", "TrainResult",
           "compare", "evaluate", "export", "merge", "train"]

if TYPE_CHECKING:
    from workbench.checkpoints.checkpoint import Checkpoint
    from workbench.compare.runs import Comparison, compare
    from workbench.eval.pipeline import EvalResult, evaluate
    from workbench.export.pipeline import ExportResult, export
    from workbench.merge.pipeline import MergeResult, merge
    from workbench.store.runs import Run, Store
    from workbench.train.pipeline import TrainResult, train


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'workbench' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))


class _Package(types.ModuleType):
    """train, merge, export and compare name both a function of the API and a subpackage, and the import system
    binds every subpackage it loads on its parent (`workbench.merge = <package>`), after any import of one of its
    modules: the function must win, whichever was loaded first. The subpackages stay importable by name
    (`from workbench.merge.lora import ...`); `import workbench.merge.lora as x` is what no longer resolves."""

    def __setattr__(self, name, value):
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

"""Runtimes: where a checkpoint runs. One protocol (runtimes/base.py), one module per runtime, registered here:

- hf: transformers (+PEFT for adapters, bitsandbytes for a QLoRA base, GPTQModel for AWQ/GPTQ folders);
- llamacpp: a GGUF file in llama.cpp, with the chat template embedded in it;
- vllm: one vLLM engine per base, adapters as LoRA requests;
- endpoint: any OpenAI-compatible server (Ollama, llama-server, vLLM, TGI, an API model), by URL.

`open_runtime(ckpt, options)` gives the runtime for a resolved checkpoint: the one `options.backend` names, or for
`auto` the one that serves the checkpoint's format. Runtimes are imported only when one is asked for.
"""

import importlib

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.runtimes.base import Runtime, RuntimeOptions

# --backend value -> the module and class of the runtime; `auto` asks each one, in this order, whether it serves
# the checkpoint, and falls back to the first.
RUNTIMES = {
    "hf": ("workbench.runtimes.hf", "HFRuntime"),
    "llamacpp": ("workbench.runtimes.llamacpp.runtime", "LlamaCppRuntime"),
    "vllm": ("workbench.runtimes.vllm", "VLLMRuntime"),
    "endpoint": ("workbench.runtimes.endpoint", "EndpointRuntime"),
}
BACKENDS = ("auto", *RUNTIMES)


def runtime_class(key: str) -> type[Runtime]:
    if key not in RUNTIMES:
        raise BadInput(f"backend '{key}': expected one of {', '.join(BACKENDS)}")
    module, name = RUNTIMES[key]
    return getattr(importlib.import_module(module), name)


def runtime_for(ckpt: Checkpoint, backend: str = "auto") -> type[Runtime]:
    """The runtime class for a checkpoint: `backend`, or for `auto` the one that serves its format."""
    if backend != "auto":
        return runtime_class(backend)
    for key in RUNTIMES:
        cls = runtime_class(key)
        if cls.serves(ckpt):
            return cls
    return runtime_class(next(iter(RUNTIMES)))


def check_runtime(ckpt: Checkpoint, options: RuntimeOptions) -> type[Runtime]:
    """The runtime class that will run `ckpt`, with everything it would refuse checked (before a run opens)."""
    cls = runtime_for(ckpt, options.backend)
    cls.check(ckpt, options)
    return cls


def open_runtime(ckpt: Checkpoint, options: RuntimeOptions | None = None, **kwargs) -> Runtime:
    """The runtime for `ckpt` (nothing loads until it is used); `kwargs` go to the runtime (e.g. a model already
    in memory for transformers)."""
    options = options or RuntimeOptions()
    return check_runtime(ckpt, options)(ckpt, options, **kwargs)


def claimed_reference(ref: str) -> type[Runtime] | None:
    """The runtime that resolves `ref` itself (an endpoint's URL), or None for a checkpoint on disk or the hub."""
    for key in RUNTIMES:
        cls = runtime_class(key)
        if getattr(cls, "claims", None) and cls.claims(ref):
            return cls
    return None

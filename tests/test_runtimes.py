"""The runtime registry and protocol: which runtime a checkpoint runs in, that every registered runtime is one,
and what is refused before anything loads. The runtimes' work itself is tested where it is used (task evals,
lm-eval, export verification, the endpoint)."""

from pathlib import Path

import pytest

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.runtimes import RUNTIMES, check_runtime, open_runtime, runtime_class, runtime_for
from workbench.runtimes.base import Runtime, RuntimeOptions


@pytest.mark.parametrize("key", sorted(RUNTIMES))
def test_every_registered_runtime_is_one(key):
    cls = runtime_class(key)
    assert issubclass(cls, Runtime) and cls.key == key and cls.label and cls.lm_eval_name
    assert not getattr(cls, "__abstractmethods__", None), cls.__abstractmethods__


def test_auto_picks_the_runtime_that_serves_the_checkpoint(tiny_model_dir):
    from workbench.checkpoints.default_model import default_gguf_path
    from workbench.checkpoints.resolve import resolve_checkpoint

    assert runtime_for(resolve_checkpoint(str(tiny_model_dir))).key == "hf"
    assert runtime_for(resolve_checkpoint(str(default_gguf_path()))).key == "llamacpp"
    served = Checkpoint(path="http://127.0.0.1:1/v1", name="m", kind="served", format="endpoint",
                        extra={"endpoint": {"model": "m"}})
    assert runtime_for(served).key == "endpoint"
    for fmt in ("peft", "awq", "gptq"):
        assert runtime_for(Checkpoint(path=Path("x"), name="x", kind="quantized", format=fmt)).key == "hf"


def test_a_backend_that_cannot_run_the_checkpoint_is_refused_before_it_loads(tiny_model_dir):
    from workbench.checkpoints.default_model import default_gguf_path
    from workbench.checkpoints.resolve import resolve_checkpoint

    hf, gguf = resolve_checkpoint(str(tiny_model_dir)), resolve_checkpoint(str(default_gguf_path()))
    with pytest.raises(BadInput, match="backend llamacpp runs GGUF files"):
        check_runtime(hf, RuntimeOptions(backend="llamacpp"))
    with pytest.raises(BadInput, match="is a GGUF file: evaluate it with --backend llamacpp"):
        check_runtime(gguf, RuntimeOptions(backend="hf"))
    with pytest.raises(BadInput, match="backend endpoint runs a served model"):
        check_runtime(hf, RuntimeOptions(backend="endpoint"))
    with pytest.raises(BadInput, match=r"backend 'tgi': expected one of auto, hf, llamacpp, vllm, endpoint"):
        runtime_class("tgi")
    with pytest.raises(BadInput, match=r"--dtype 'float8'"):
        RuntimeOptions(dtype="float8")


def test_opening_a_runtime_loads_nothing_until_it_is_used(tiny_model_dir):
    from workbench.checkpoints.resolve import resolve_checkpoint

    runtime = open_runtime(resolve_checkpoint(str(tiny_model_dir)))
    assert runtime._model is None
    assert runtime.lm_eval_args() == {"pretrained": str(Path(tiny_model_dir).resolve()), "dtype": "float32"}
    assert runtime.describe() == {"runtime": "transformers", "backend": "hf", "device": "cpu"}
    assert runtime._model is None
    assert len(runtime.chat_template_sha()) == 64  # read from the files: the tokenizer's template

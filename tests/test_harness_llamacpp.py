"""The llama.cpp lm-eval backend (wb-llamacpp): a GGUF export of the tiny model scored by lm-eval's own tasks."""

import importlib.util

import pytest

from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.eval.harness import run_harness

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="needs llama-cpp-python (pip install 'ckpt-workbench[gguf]')")


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, module_tmp):
    from workbench.export.gguf.exporter import export_gguf

    out = module_tmp("tiny-gguf") / "out"
    [art] = export_gguf(resolve_checkpoint(tiny_model_dir), out, "f16", progress=False, ollama=False)
    return resolve_checkpoint(art.path)


def test_loglikelihood_matches_transformers(tiny_gguf, tiny_model_dir, data_dir):
    kwargs = {"data_dir": data_dir, "limit": 3, "num_fewshot": 1, "use_cache": False}
    gguf = run_harness(tiny_gguf, ["mmlu_anatomy"], **kwargs)
    hf = run_harness(resolve_checkpoint(tiny_model_dir), ["mmlu_anatomy"], **kwargs)
    assert gguf.settings["model"] == "wb-llamacpp" and gguf.settings["device"] == "cpu"
    assert gguf.settings["versions"]["llama-cpp-python"] and gguf.settings["dtype"] is None
    ours, theirs = gguf.samples["mmlu_anatomy"], hf.samples["mmlu_anatomy"]
    assert [s["prompt"] for s in ours] == [s["prompt"] for s in theirs]  # lm-eval built the same requests
    for a, b in zip(ours, theirs):
        # f16 weights in llama.cpp vs float32 in transformers: the same log-probabilities to f16 precision
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=2e-3)
    acc = {m["metric"]: m for m in gguf.metrics}["acc"]
    assert acc["n"] == 3 and acc["value"] == sum(s["metrics"]["acc"] for s in ours) / 3


def test_generation_scored_by_lm_eval(tiny_gguf, data_dir):
    result = run_harness(tiny_gguf, ["gsm8k"], data_dir=data_dir, limit=2, num_fewshot=1,
                         gen_kwargs={"max_gen_toks": 8}, use_cache=False)
    metrics = {(m["metric"], m["filter"]) for m in result.metrics}
    assert metrics == {("exact_match", "strict-match"), ("exact_match", "flexible-extract")}
    samples = result.samples["gsm8k"]
    assert len(samples) == 4 and all(isinstance(s["responses"][0], str) for s in samples)
    assert samples[0]["prompt"].startswith("Question: ") and samples[0]["prompt"].endswith("Answer:")
    assert result.cache == {"result": "off"}

"""Offline always. Tiny real models are built here; the default model is materialized once per session."""

import json
import os
import shutil
import subprocess

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    # WB_HOME caches the default model (about a minute to convert from its GGUF): share one per machine
    # unless the caller chose one. The store is always per test.
    os.environ.setdefault("WB_HOME", str(Path.home() / ".cache" / "ckpt-workbench-tests"))


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    path = tmp_path / "store"
    monkeypatch.setenv("WB_STORE", str(path))
    return path


@pytest.fixture(scope="session")
def data_dir():
    """The real MMLU/GSM8K mirror beside the project (../shared/data), as a user's local mirror."""
    path = Path(os.environ.get("WB_DATA_DIR") or SHARED_DATA)
    if not (path / "mmlu").is_dir():
        pytest.skip(f"needs the benchmark mirror at {path} (set WB_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def default_ckpt():
    from workbench.checkpoints.resolve import resolve_checkpoint

    return resolve_checkpoint("default")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_ckpt):
    """A 2-layer Llama with random weights and the default model's real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(str(default_ckpt.path))
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def go_render(tmp_path_factory):
    """Go's text/template (Ollama's engine): the stdlib-only program in exporters/ollama/render, built once."""
    go = shutil.which("go")
    if not go:
        pytest.skip("needs Go (Debian golang-go; scripts/test.sh installs it when run as root) to cross-check "
                    "the Python Go-template renderer against Go's text/template")
    out = tmp_path_factory.mktemp("gorender")
    env = {"HOME": str(out), "GOCACHE": str(out / "cache"), "GOPATH": str(out / "gopath"), "GOFLAGS": "-mod=mod",
           "GO111MODULE": "off", "PATH": "/usr/bin:/bin"}
    main = REPO / "exporters" / "ollama" / "render" / "main.go"
    subprocess.run([go, "build", "-o", str(out / "render"), str(main)], check=True, env=env, capture_output=True)

    def render(template: str, values: dict) -> str:
        proc = subprocess.run([str(out / "render")], input=json.dumps({"template": template, "values": values}),
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(proc.stderr.strip())
        return proc.stdout

    return render

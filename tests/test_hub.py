"""Hub ids as checkpoints, offline: a real Hugging Face cache folder (models--org--name/blobs, snapshots/<commit>,
refs/main) built from the tiny model, read through huggingface_hub with HF_HUB_OFFLINE=1."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.checkpoints.resolve import portable_base, resolve_checkpoint
from workbench.errors import BadInput

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build_hf_cache(model_dir: Path, cache: Path, repo: str, commit: str = COMMIT) -> Path:
    """The layout huggingface_hub writes: files as content-addressed blobs, the snapshot as links to them."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir(exist_ok=True)
    for f in model_dir.iterdir():
        if not f.is_file():
            continue
        blob = folder / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, tiny_model_dir, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    build_hf_cache(tiny_model_dir, cache, "wb-tests/tiny-llama")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_hub_id_resolves_to_its_cached_snapshot(hub_cache, tiny_model_dir):
    from workbench.checkpoints.checkpoint import weights_sha

    ckpt = resolve_checkpoint("wb-tests/tiny-llama")
    assert ckpt.path.name == COMMIT and ckpt.path.parent.name == "snapshots"
    assert ckpt.hub == {"id": "wb-tests/tiny-llama", "revision": "main", "commit": COMMIT}
    assert ckpt.name == "wb-tests/tiny-llama" and ckpt.kind == "merged" and ckpt.format == "hf"
    assert ckpt.sha == weights_sha(tiny_model_dir)  # the same bytes as the folder it was built from
    pinned = resolve_checkpoint(f"wb-tests/tiny-llama@{COMMIT}")
    assert pinned.path == ckpt.path and pinned.hub["revision"] == COMMIT


@pytest.mark.parametrize("ref,needle", [
    ("wb-tests/not-cached", "not in the Hugging Face cache"),
    ("wb-tests/tiny-llama@" + "f" * 40, "not in the Hugging Face cache"),
    ("no-such-dir/x/y", "no such file or directory"),
])
def test_unknown_hub_ids_are_bad_input(hub_cache, ref, needle):
    with pytest.raises(BadInput, match=needle):
        resolve_checkpoint(ref)


def test_adapter_on_a_hub_base_resolves_it_once(hub_cache, tmp_path, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "wb-tests/tiny-llama"
    (adapter / "adapter_config.json").write_text(json.dumps(config))

    ckpt = resolve_checkpoint(adapter)
    base = ckpt.base_checkpoint
    assert base.hub["commit"] == COMMIT and base.sha and ckpt.tokenizer_source == base.path
    recorded = ckpt.to_dict()["base_resolved"]
    assert recorded["sha"] == base.sha and recorded["hub"]["commit"] == COMMIT
    assert portable_base(base, "wb-tests/tiny-llama") == "wb-tests/tiny-llama"
    assert portable_base(base, f"wb-tests/tiny-llama@{COMMIT[:7]}") == f"wb-tests/tiny-llama@{COMMIT}"


def test_portable_base_of_the_default_model(default_ckpt):
    from workbench.checkpoints.resolve import resolve_base

    assert portable_base(default_ckpt, "default") == "default"
    # adapters trained before wb recorded `default` name the converted folder under WB_HOME
    assert resolve_base(str(default_ckpt.path)).name == "default"


def test_eval_of_a_hub_id_records_commit_and_sha(hub_cache, tmp_path, tiny_model_dir):
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "WB_STORE": str(tmp_path / "store")}
    res = subprocess.run([sys.executable, "-m", "workbench", "eval", "wb-tests/tiny-llama", "--suite", "contacts",
                          "--limit", "2", "--no-harness", "--json"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    checkpoint = json.loads(res.stdout)["checkpoint"]
    print("\nmanifest checkpoint:", json.dumps({k: checkpoint[k] for k in ("name", "path", "sha", "hub")}, indent=1))
    assert checkpoint["hub"] == {"id": "wb-tests/tiny-llama", "revision": "main", "commit": COMMIT}
    assert len(checkpoint["sha"]) == 64 and checkpoint["path"].endswith(f"snapshots/{COMMIT}")

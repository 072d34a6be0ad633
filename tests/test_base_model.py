"""A base model end to end: the default model's folder without its chat template (as a base model's tokenizer has
none), fine-tuned with `chat_template: chatml` on the contacts data, then evaluated against the base, merged,
exported to GGUF with its Ollama bundle and evaluated again; every stage runs on the template the recipe chose, and
records the same sha. And the refusals when no template is anywhere: train and eval exit 3, one line, no run."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hostile_support import assert_refused, run_cli, snapshot
from workbench.chat.named import named_template, template_sha256
from workbench.store import Store

REPO = Path(__file__).resolve().parent.parent
CHATML_SHA = template_sha256(named_template("chatml"))
LIMIT = "12"  # contacts items per eval


def _base_folder(default_ckpt, folder: Path) -> Path:
    """The default model's files, without chat_template.jinja and with no chat_template in tokenizer_config.json."""
    folder.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json"):
        shutil.copy2(default_ckpt.path / name, folder / name)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def _recipe(folder: Path, base: Path, template: str | None, steps: int = 6) -> Path:
    lines = ["name: base-chatml", f"base: {base}", f"train_data: {REPO / 'evals' / 'data' / 'contacts_train.jsonl'}",
             *([f"chat_template: {template}"] if template else []),
             (f"training: {{max_steps: {steps}, learning_rate: 0.001, batch_size: 4, max_length: 160, "
              "logging_steps: 1, seed: 0}")]
    path = folder / "recipe.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def base_dir(tmp_path, default_ckpt):
    return _base_folder(default_ckpt, tmp_path / "inputs" / "base")


@pytest.mark.slow  # hashes the copied weights twice
def test_no_template_anywhere_is_refused_before_any_run(tmp_path, base_dir, capsys, monkeypatch):
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    recipe = _recipe(tmp_path / "inputs", base_dir, None)
    before = snapshot(tmp_path)
    res = run_cli(["train", recipe, "-o", tmp_path / "adapter"], capsys)
    assert_refused(res, 3, (str(recipe), "has no chat template", "`chat_template:` in the recipe", "chatml"), before,
                   tmp_path)
    res = run_cli(["eval", base_dir, "--suite", "contacts", "--limit", "2"], capsys)
    assert_refused(res, 3, (str(base_dir), "has no chat template", "--chat-template FILE|NAME",
                            "`chat_template:` in its recipe"), before, tmp_path)
    bad = _recipe(tmp_path / "inputs", base_dir, "chatm1")
    before = snapshot(tmp_path)
    res = run_cli(["train", bad, "-o", tmp_path / "adapter"], capsys)
    valid = "(chatml, gemma, llama3, mistral, phi3, qwen3)"
    assert_refused(res, 3, (f"chat_template: 'chatm1' is not a named template {valid}",), before, tmp_path)
    res = run_cli(["eval", base_dir, "--suite", "contacts", "--chat-template", "chatm1"], capsys)
    assert_refused(res, 3, ("--chat-template: 'chatm1' is not a named template",), before, tmp_path)


def _wb(*args, env) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=30 * 60, check=False)
    assert res.returncode == 0, (args, res.stderr[-3000:])
    return res, time.monotonic() - started


def _value(run, metric: str) -> float:
    return next(m["value"] for m in run.metrics if m["task"] == "contacts" and m["metric"] == metric)


@pytest.mark.slow
def test_base_model_trained_on_chatml_end_to_end(tmp_path, base_dir, data_dir):
    store_dir = tmp_path / "store"
    env = {**os.environ, "WB_STORE": str(store_dir), "WB_DATA_DIR": str(data_dir),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    recipe, adapter = _recipe(tmp_path / "inputs", base_dir, "chatml"), tmp_path / "adapter"
    seconds = {}
    _, seconds["train"] = _wb("train", recipe, "-o", adapter, env=env)
    assert (adapter / "chat_template.jinja").read_text() == named_template("chatml")
    lineage = json.loads((adapter / "wb_checkpoint.json").read_text())["parent"]["chat_template"]
    assert lineage == {"source": "chatml", "sha256": CHATML_SHA}

    res, seconds["eval adapter + base"] = _wb("eval", adapter, "--suite", "contacts", "--baseline", base_dir,
                                              "--limit", LIMIT, "--json", env=env)
    assert "other than the one it was trained with" not in res.stderr
    store = Store(store_dir)
    run = store.load(json.loads(res.stdout)["run_id"])
    base_run = store.load(json.loads(res.stdout)["comparison"]["run_a"])
    assert run.manifest["chat_template"] == {"source": "adapter", "sha256": CHATML_SHA, "trained_sha256": CHATML_SHA}
    assert base_run.manifest["chat_template"] == {"source": "adapter", "sha256": CHATML_SHA}
    assert run.manifest["chat_template_sha"] == base_run.manifest["chat_template_sha"] == CHATML_SHA

    merged, gguf = tmp_path / "merged", tmp_path / "gguf"
    _, seconds["merge"] = _wb("merge", adapter, "-o", merged, env=env)
    _, seconds["export gguf q8_0 + Ollama"] = _wb("export", merged, "--format", "gguf", "--quant", "q8_0",
                                                   "--no-verify", "-o", gguf, env=env)
    [q8] = gguf.glob("*-Q8_0.gguf")
    assert gguf.joinpath(q8.name.replace(".gguf", ".Modelfile")).is_file()
    res, seconds["eval gguf"] = _wb("eval", q8, "--suite", "contacts", "--limit", LIMIT, "--json", env=env)
    gguf_run = store.load(json.loads(res.stdout)["run_id"])
    assert gguf_run.manifest["chat_template"]["sha256"] == gguf_run.manifest["chat_template_sha"] == CHATML_SHA
    for kind in ("merge", "export"):
        [made] = store.list_runs(kind=kind)
        assert store.load(made["run_id"]).manifest["chat_template_sha256"] == CHATML_SHA, kind

    scores = {name: {m: _value(r, m) for m in ("exact", "json_fields")}
              for name, r in (("base", base_run), ("adapter", run), ("gguf q8_0", gguf_run))}
    print(f"\ncontacts, {LIMIT} items: {scores}\nseconds: { {k: round(v, 1) for k, v in seconds.items()} }")
    assert scores["adapter"]["json_fields"] > scores["base"]["json_fields"]
    assert scores["adapter"]["exact"] > scores["base"]["exact"]

"""Which chat template `wb eval` prompts a checkpoint with (workbench.eval.templates), checked on the tiny Llama
without its template (a base model) and a LoRA adapter on it that carries ChatML: the adapter's own, the base as
its baseline on the adapter's, `--chat-template` over both, and the warning with both shas when the template is not
the one the checkpoint was trained with. prepare_eval only: nothing loads but the tokenizer."""

import json
import shutil

import pytest

from tests.hostile_support import tiny_adapter_dir  # noqa: F401 - a fixture
from workbench.chat.named import named_template, template_sha256
from workbench.eval.pipeline import prepare_eval
from workbench.runtimes.hf import HFRuntime

CHATML, PHI3 = template_sha256(named_template("chatml")), template_sha256(named_template("phi3"))


@pytest.fixture
def bare_base(tmp_path, tiny_model_dir):
    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    return base


@pytest.fixture
def chatml_adapter(tmp_path, bare_base, tiny_adapter_dir):  # noqa: F811
    """An adapter as `wb train` with `chat_template: chatml` leaves it: tokenizer + chat_template.jinja + lineage."""
    adapter = shutil.copytree(tiny_adapter_dir, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(bare_base)}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(bare_base / name, adapter / name)
    (adapter / "chat_template.jinja").write_text(named_template("chatml"))
    (adapter / "wb_checkpoint.json").write_text(json.dumps({
        "name": "tiny-chatml", "kind": "adapter", "format": "peft", "base": str(bare_base),
        "parent": {"chat_template": {"source": "chatml", "sha256": CHATML}}}))
    return adapter


def _prepare(tmp_path, ckpt, **options):
    return prepare_eval(str(ckpt), "contacts", limit=2, store=tmp_path / "store", **options)


def test_adapter_and_its_baseline_use_the_adapter_template(tmp_path, chatml_adapter, bare_base, capsys):
    request = _prepare(tmp_path, chatml_adapter, baseline=str(bare_base))
    assert request.template == {"source": "adapter", "sha256": CHATML, "trained_sha256": CHATML}
    assert request.baseline_template == {"source": "adapter", "sha256": CHATML}
    base = HFRuntime(request.baseline_checkpoint)
    assert base.chat_template_sha() == CHATML and base.tokenizer.chat_template == named_template("chatml")
    assert base.chat_format().end_of_turn[0] == "<|im_end|>"
    assert "warning" not in capsys.readouterr().err


def test_another_template_than_trained_warns_with_both_shas(tmp_path, chatml_adapter, bare_base, capsys):
    request = _prepare(tmp_path, chatml_adapter, template="phi3", baseline=str(bare_base))
    assert request.template == {"source": "option", "name": "phi3", "sha256": PHI3, "trained_sha256": CHATML}
    assert request.baseline_template == {"source": "option", "sha256": PHI3}
    err = capsys.readouterr().err
    assert f"(option, sha256 {PHI3[:12]}) other than the one it was trained with (sha256 {CHATML[:12]})" in err
    assert HFRuntime(request.checkpoint).chat_template_sha() == PHI3


def test_an_adapter_whose_template_file_was_changed_warns(tmp_path, chatml_adapter, capsys):
    (chatml_adapter / "chat_template.jinja").write_text(named_template("gemma"))
    request = _prepare(tmp_path, chatml_adapter)
    gemma = template_sha256(named_template("gemma"))
    assert request.template == {"source": "adapter", "sha256": gemma, "trained_sha256": CHATML}
    assert "other than the one it was trained with" in capsys.readouterr().err


def test_a_base_model_with_a_template_file(tmp_path, bare_base, capsys):
    mine = tmp_path / "mine.jinja"
    mine.write_text(named_template("chatml"))
    request = _prepare(tmp_path, bare_base, template=str(mine))
    assert request.template == {"source": "option", "file": str(mine.resolve()), "sha256": CHATML}
    assert "warning" not in capsys.readouterr().err

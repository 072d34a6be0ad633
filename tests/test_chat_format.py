"""ChatFormat: generation prompt, end-of-turn and user-turn tokens, and system-role support, read from what real
templates emit with real tokenizers (the default model's, with other families' templates and special tokens)."""

import json

import pytest
from chat_templates import GEMMA3

from workbench.chat import format as chat_format
from workbench.chat.template import render_template

GEMMA2 = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
          "{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
          "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] "
          "| trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
GPT_OSS_LIKE = ("{% for m in messages %}{% if m.role == 'assistant' %}{% if m.thinking %}{{ '<|start|>assistant<|channel|>"
                "analysis<|message|>' + m.thinking + '<|end|>' }}{% endif %}{{ '<|start|>assistant<|channel|>final<|message|>'"
                " + m.content }}{{ '<|return|>' if loop.last else '<|end|>' }}{% else %}{{ '<|start|>' + m.role + "
                "'<|message|>' + m.content + '<|end|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
                "{{ '<|start|>assistant' }}{% endif %}")


@pytest.fixture(scope="module")
def gemma_tokenizer(default_ckpt):
    """The default model's tokenizer with Gemma's turn tokens added as special tokens and Gemma 3's template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_ckpt.path))
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.chat_template = GEMMA3
    return tok


def test_chatml_of_the_default_model(default_ckpt):
    from workbench.runtimes.hf import HFRuntime

    fmt = HFRuntime(default_ckpt).chat_format()
    assert fmt.generation_prompt == "<|im_start|>assistant\n"
    assert fmt.end_of_turn == ("<|im_end|>",) and fmt.user_turn == ("<|im_start|>",)
    assert fmt.system_role and fmt.stop_tokens == ("<|im_end|>", "<|im_start|>")
    assert HFRuntime(default_ckpt).chat_format() is fmt  # derived once per resolved checkpoint


def test_gemma3_turns_end_at_end_of_turn_not_only_eos(gemma_tokenizer):
    eos = gemma_tokenizer.convert_tokens_to_ids("<|endoftext|>")  # a base model's generation_config: <eos> only
    fmt = chat_format.from_tokenizer(gemma_tokenizer, [eos])
    assert fmt.generation_prompt == "<start_of_turn>model\n"
    assert fmt.end_of_turn[0] == "<end_of_turn>" and "<|endoftext|>" in fmt.end_of_turn
    assert fmt.user_turn == ("<start_of_turn>",) and fmt.system_role
    ids = chat_format.hf_token_ids(gemma_tokenizer, fmt.stop_tokens)
    assert gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>") in ids and eos in ids


def test_gemma2_has_no_system_role_and_folds_it(gemma_tokenizer):
    tok = gemma_tokenizer.__class__.from_pretrained(gemma_tokenizer.name_or_path)
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.chat_template = GEMMA2
    fmt = chat_format.from_tokenizer(tok)
    assert not fmt.system_role and fmt.end_of_turn[0] == "<end_of_turn>"
    folded = fmt.messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert folded == [{"role": "user", "content": "Be brief.\n\nHi"}]
    assert "Be brief.\n\nHi<end_of_turn>" in tok.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)


def test_gpt_oss_channels_are_not_stops():
    specials = {"<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>"}
    fmt = chat_format.derive(GPT_OSS_LIKE, lambda m, g: render_template(GPT_OSS_LIKE, m, g), specials, ["<|call|>"])
    # <|end|><|start|>assistant<|channel|>final<|message|> sit between the analysis and the final answer
    assert fmt.end_of_turn == ("<|return|>", "<|call|>")
    assert not set(fmt.stop_tokens) & {"<|end|>", "<|start|>", "<|channel|>", "<|message|>"}


def test_no_template_stops_at_eos_only():
    fmt = chat_format.derive(None, None, set(), ["</s>"])
    assert fmt.template is None and fmt.end_of_turn == ("</s>",) and fmt.sha256 is None


def test_generation_eos_ids_read_from_generation_config(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 106]}))
    assert chat_format.generation_eos_ids(tmp_path) == [1, 106]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    assert chat_format.generation_eos_ids(tmp_path) == [2]
    assert chat_format.generation_eos_ids(tmp_path / "missing") == []

"""Ollama bundles on each family's real vocabulary (tests/real_vocab.py): the family's own template on the
tokenizer it was written for, its special tokens single tokens, the Go template's rendering equal to the Jinja
one in text and in tokens (transformers' and llama.cpp's of the same GGUF vocabulary), the stop list holding the
turn ends, tool-turn ends included."""

import pytest
from real_vocab import corpus_templates, hf_tokenizer, llama_tokenizer, vocab_metadata

from workbench.chat import format as chat_format
from workbench.export.ollama import bundle as ollama

CASES = [  # template, vocabulary, tokens that must each be one token, stops the Modelfile must hold, and whether
    # transformers' tokenizer converted from the GGUF splits like llama.cpp (its SentencePiece conversion does not)
    ("meta-llama-Llama-3.1-8B-Instruct", "llama3.1", ["<|start_header_id|>", "<|eot_id|>", "<|python_tag|>"],
     ["<|eot_id|>", "<|eom_id|>"], True),
    ("meta-llama-Llama-3.2-3B-Instruct", "llama-bpe", ["<|start_header_id|>", "<|eot_id|>"], ["<|eot_id|>"], True),
    ("meta-llama-Llama-3.3-70B-Instruct", "llama3.1", ["<|eot_id|>", "<|eom_id|>"], ["<|eot_id|>", "<|eom_id|>"], True),
    ("Mistral-Small-3.2-24B-Instruct-2506", "llama-spm", ["<s>", "</s>"], ["</s>"], False),
    ("Qwen-Qwen3-0.6B", "qwen3", ["<|im_start|>", "<|im_end|>", "<tool_call>", "<think>"], ["<|im_end|>"], True),
    ("microsoft-Phi-3.5-mini-instruct", "phi-3", ["<|user|>", "<|end|>"], ["<|end|>"], False),
]


@pytest.fixture(scope="module")
def templates():
    return corpus_templates()


@pytest.mark.parametrize("name,vocab,single,stops,same_split", CASES, ids=[c[0] for c in CASES])
def test_family_template_round_trips_on_its_real_vocabulary(templates, tmp_path, name, vocab, single, stops,
                                                            same_split):
    tok = hf_tokenizer(vocab)
    tok.chat_template = templates[name]
    for token in single:
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1, token
    meta = vocab_metadata(vocab)
    fmt = chat_format.from_tokenizer(tok, [meta["eos_token_id"]])
    record = ollama.write_bundle(tmp_path / "m.gguf", tok, tmp_path, fmt, llama_tokenize=llama_tokenizer(vocab),
                                 adds_bos=bool(meta.get("add_bos_token")))
    assert "error" not in record, record
    assert record["roundtrip"]["passed"] and record["roundtrip"]["total"] >= 4
    assert any("llama.cpp tokenizes" in n for n in record["notes"]) != same_split, record["notes"]
    text = (tmp_path / "m.Modelfile").read_text()
    assert set(stops) <= set(ollama.parse_modelfile(text)["stops"])

"""Tiny models on real vocabularies (issue 25, item 6): each family's real tokenizer (tests/real_vocab.py) and its
real template under a tiny Llama whose greedy answer is known, taken through `wb export --format gguf` (llama.cpp's
converter must recognise the family's pre-tokenizer, and the Ollama bundle is derived from the exported tokenizer),
then generated with tools by transformers and by llama.cpp on the exported file, and scored by the `tool_call` scorer.

The model's next token depends on the current token only (tests/chain_models.py). After the generation prompt it
writes the family's tool call, then the family's tool-turn end (Qwen 3's `<|im_end|>`, Llama 3.1's `<|eom_id|>`,
which is not the tokenizer's EOS), then " LEAK": a runtime that does not stop at the turn end shows it. Llama 3.1's
answer opens with a newline, which every runtime returns stripped. Every token of the answer is a real token of
the vocabulary, and each occurs once, so the chain is unambiguous."""

import json
import subprocess
import sys

import pytest
from chain_models import save_chain_model
from real_vocab import corpus_templates, hf_tokenizer

from workbench.export.ollama import bundle as ollama

TOOLS = [{"type": "function", "function": {"name": "list_contacts", "description": "List every contact.",
                                           "parameters": {"type": "object", "properties": {}}}}]
QUESTION = [{"role": "user", "content": "Who is in my address book?"}]

# vocabulary, template, the call as the model writes it, the turn end it must stop at, Ollama's tool-call prefix
FAMILIES = {
    "qwen3": ("qwen3", "Qwen-Qwen3-0.6B", '<tool_call>{"name":"list_contacts","arguments":{}}</tool_call>',
              "<|im_end|>", "<tool_call>"),
    "llama3.1": ("llama3.1", "meta-llama-Llama-3.1-8B-Instruct", '\n{"name":"list_contacts","parameters":{}}',
                 "<|eom_id|>", "{"),
}


def chain_model(folder, vocab: str, template: str, answer: str, turn_end: str):
    """The tokenizer of `vocab` with `template`, under a tiny Llama that answers every generation prompt of the
    template (thinking on or off) with `answer`, `turn_end`, " LEAK"."""
    tok = hf_tokenizer(vocab)
    tok.chat_template = template
    chain = tok.encode(answer + turn_end, add_special_tokens=False) + tok.encode(" LEAK", add_special_tokens=False)[:1]
    assert len(set(chain)) == len(chain), [tok.convert_ids_to_tokens(i) for i in chain]
    assert tok.convert_ids_to_tokens(chain[-2]) == turn_end  # the turn end is one token of the vocabulary
    starts = set()
    for kwargs in ({}, {"enable_thinking": False}):
        prompt = tok.apply_chat_template(QUESTION, tools=TOOLS, add_generation_prompt=True, tokenize=False, **kwargs)
        starts.add(tok.encode(prompt, add_special_tokens=False)[-1])
    pairs = [*((start, chain[0]) for start in starts), *zip(chain, chain[1:], strict=False)]
    return save_chain_model(folder, tok, pairs, eos_token_id=tok.eos_token_id)


@pytest.fixture(scope="module")
def exported(module_tmp, llama_tools):
    """Per family: (the HF folder, the `wb export` JSON record), exported to Q8_0 with its Ollama bundle."""
    pytest.importorskip("llama_cpp")
    templates, out = corpus_templates(), {}
    for family, (vocab, template, answer, turn_end, _) in FAMILIES.items():
        folder = chain_model(module_tmp(f"chain-{family}"), vocab, templates[template], answer,
                             turn_end)
        gguf_dir = module_tmp(f"gguf-{family}")
        res = subprocess.run([sys.executable, "-m", "workbench", "export", str(folder), "--format", "gguf",
                              "--quant", "q8_0", "-o", str(gguf_dir / "out"), "--json"],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, (family, res.stderr[-3000:])
        out[family] = (folder, json.loads(res.stdout), gguf_dir / "out")
    return out


@pytest.mark.slow  # two 128k/152k-token vocabularies through llama.cpp's converter: about a minute on 2 cores
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exported_family_calls_tools_and_stops_at_its_turn_end_in_both_runtimes(exported, family, tmp_path,
                                                                               monkeypatch):
    import workbench
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.config import GenerationSpec
    from workbench.runtimes.hf import HFRuntime
    from workbench.runtimes.llamacpp.runtime import LlamaCppRuntime

    _, _, answer, turn_end, prefix = FAMILIES[family]
    folder, record, out = exported[family]
    gguf = next(out.glob("*.gguf"))
    modelfile = ollama.parse_modelfile(next(out.glob("*.Modelfile")).read_text())
    assert turn_end in modelfile["stops"], modelfile["stops"]
    bundle = json.loads(gguf.with_name(gguf.name + ".wb.json").read_text())["extra"]["ollama"]
    assert bundle["roundtrip"]["passed"] and bundle["tools"]["in_modelfile"], bundle
    assert bundle["tools"]["call_prefix"] == prefix and "$tools := .Tools" in modelfile["template"]

    hf, cpp = HFRuntime(resolve_checkpoint(str(folder))), LlamaCppRuntime(resolve_checkpoint(str(gguf)))
    try:
        for thinking in ("on", "off"):
            spec = GenerationSpec(max_new_tokens=24, thinking=thinking)
            outputs = [rt.generate([QUESTION], spec, tools=[TOOLS])[0] for rt in (hf, cpp)]
            assert outputs[0] == outputs[1] == answer.strip(), (thinking, outputs)
    finally:
        cpp.close()
        hf.close()

    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "all", "tools": TOOLS, "messages": QUESTION,
                                 "reference": [{"name": "list_contacts", "arguments": {}}]}) + "\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: calls\ntasks:\n  - name: calls\n    data: items.jsonl\n"
                     "    generation: {max_new_tokens: 24}\n    scorers: [{type: tool_call}]\n")
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    for ckpt in (folder, gguf):
        metrics = {m["metric"]: m["value"] for m in workbench.evaluate(str(ckpt), suite=str(suite),
                                                                        progress=False).metrics}
        assert metrics["tool_call"] == 1.0 and metrics["tool_call.unparseable"] == 0.0, (ckpt, metrics)

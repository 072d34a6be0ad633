"""Tools in Ollama bundles: the values Ollama hands a template (its tools, each call's function and arguments, tool
results, thinking, the think flags) rendered alike by the Python renderer and Go's own text/template; what each
tool-capable template of llama.cpp's corpus gets (its tools written by Ollama as the Jinja template writes them,
or the construct that Ollama's template language cannot express, named)."""

import json

import pytest
from real_vocab import corpus_templates, hf_tokenizer

from workbench.chat import format as chat_format
from workbench.chat.template import render_template
from workbench.export.ollama import bundle as ollama
from workbench.export.ollama import gotemplate
from workbench.export.ollama.template import tool_support

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather <now> & later in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def _call(name, args, as_text=False):
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(args) if as_text else args}}


CONVERSATIONS = [  # one call, parallel calls (arguments as OpenAI's JSON text too), tool results, reasoning
    [{"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"unit": "c", "city": "Paris"})]},
     {"role": "tool", "name": "get_weather", "content": "{\"temp\": 21}"}],
    [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Paris and Tōkyō, and the time?"},
     {"role": "assistant", "content": "", "tool_calls": [
         _call("get_weather", {"city": "Paris"}), _call("get_weather", {"city": "Tōkyō", "unit": "f"}, True),
         _call("get_time", {})]},
     {"role": "tool", "name": "get_weather", "content": "21"}, {"role": "tool", "name": "get_weather", "content": "70"},
     {"role": "tool", "name": "get_time", "content": "noon"}, {"role": "user", "content": "Thanks <b>&</b>"}],
    [{"role": "user", "content": "Think first."},
     {"role": "assistant", "content": "Done.", "reasoning_content": "Let me see."}, {"role": "user", "content": "Again"}],
]

# Ollama's own way of writing tools (as in its qwen2.5 template), and every value and function it passes
TEMPLATE = """{{- if .Tools }}<tools>{{ range .Tools }}
{{ . }}{{ end }}
{{ json $.Tools }}</tools>{{ end }}
{{- range $i, $m := .Messages }}<|{{ $m.Role }}|>
{{- if $m.Thinking }}<think>{{ $m.Thinking }}</think>{{ end }}{{ $m.Content }}
{{- if $m.ToolCalls }}<tool_call>{{ range $m.ToolCalls }}
{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}} {{ json .Function.Arguments }} {{ .Function.Index }}
{{- end }}</tool_call>{{ end }}
{{- if eq $m.Role "tool" }} ({{ $m.ToolName }}){{ end }}
{{ end }}{{ if $.IsThinkSet }}think={{ $.Think }}{{ end }}"""


@pytest.mark.parametrize("think", [None, True, False])
def test_go_renders_ollama_tool_values_like_python(go_render, think):
    for messages in CONVERSATIONS:
        values = ollama.ollama_values(messages, tools=[WEATHER, TIME], think=think)
        assert json.loads(json.dumps(values)) == values  # what main.go reads
        assert gotemplate.render(TEMPLATE, values) == go_render(TEMPLATE, values)
    text = gotemplate.render(TEMPLATE, ollama.ollama_values(CONVERSATIONS[1], tools=[WEATHER], think=think))
    # Ollama's shapes: compact JSON in the caller's key order, HTML characters escaped, calls indexed
    assert '{"name": "get_weather", "arguments": {"city":"Tōkyō","unit":"f"}}' in text
    assert '"description":"Weather \\u003cnow\\u003e \\u0026 later in a city"' in text
    assert '{"type":"function","function":{"name":"get_weather"' in text
    assert '{"name": "get_time", "arguments": {}} {} 2</tool_call>' in text
    assert ("think=" in text) == (think is not None)


def test_tool_results_and_parallel_calls_keep_their_messages():
    values = ollama.ollama_values(CONVERSATIONS[1])
    roles = [m["Role"] for m in values["Messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "tool", "user"]
    calls = values["Messages"][2]["ToolCalls"]
    assert [c["Function"]["Name"] for c in calls] == ["get_weather", "get_weather", "get_time"]
    assert calls[1]["Function"]["Arguments"] == {"city": "Tōkyō", "unit": "f"}
    assert [m.get("ToolName") for m in values["Messages"][3:6]] == ["get_weather", "get_weather", "get_time"]


@pytest.fixture(scope="module")
def corpus():
    return corpus_templates()


def test_every_tool_capable_corpus_template_is_named(corpus):
    """Each template that writes tools: its tools round-trip through Ollama, or the construct is named."""
    kinds = {}
    for name, template in sorted(corpus.items()):
        render = ollama.tool_tolerant(lambda m, g, t, variables, template=template: render_template(
            template, m, g, special_tokens={"bos_token": "<s>", "eos_token": "</s>"}, tools=t,
            template_kwargs=variables))
        support = tool_support(render)
        if support.renders_tools:
            kinds[name] = support.reason
    by_reason = {}
    for name, reason in kinds.items():
        by_reason.setdefault(reason.split(";")[0], []).append(name)
    print(f"\n{len(kinds)} of {len(corpus)} templates write tools: round-trip 0, refused {len(kinds)}, failed 0")
    for reason, names in by_reason.items():
        print(f"  {len(names):3} {reason}")
    assert len(kinds) >= 55
    assert all(kinds.values())  # each names its construct
    for tool_only in ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
                      "CohereForAI-c4ai-command-r-plus-tool_use"):
        assert tool_only in kinds
    assert "tojson" in kinds["meta-llama-Llama-3.1-8B-Instruct"]
    assert "tojson" in kinds["Mistral-Small-3.2-24B-Instruct-2506"]


def test_llama31_bundle_records_why_its_tools_stay_out(corpus, tmp_path):
    tok = hf_tokenizer("llama3.1")
    tok.chat_template = corpus["meta-llama-Llama-3.1-8B-Instruct"]
    fmt = chat_format.from_tokenizer(tok)
    record = ollama.write_bundle(tmp_path / "m.gguf", tok, tmp_path, fmt, adds_bos=True)
    assert record["modelfile"] == "m.Modelfile" and record["roundtrip"]["passed"]
    assert record["tools"]["template_renders_tools"] and not record["tools"]["in_modelfile"]
    assert "tojson" in record["tools"]["refused"]
    assert any(n.startswith("tools: ") and "does not support tools" in n for n in record["notes"])
    assert "<|eom_id|>" in ollama.parse_modelfile((tmp_path / "m.Modelfile").read_text())["stops"]


def test_template_without_tools_records_none(default_ckpt, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_ckpt.path))
    record = ollama.write_bundle(tmp_path / "m.gguf", tok, tmp_path, chat_format.from_tokenizer(tok))
    assert record["tools"] == {"template_renders_tools": False, "in_modelfile": False, "refused": None}
    assert not any(n.startswith("tools: ") for n in record["notes"])

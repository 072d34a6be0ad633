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
from workbench.export.ollama.template import TemplateNotExpressible, derive

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


def _corpus_render(template):
    return ollama.tool_tolerant(lambda m, g, t, variables: render_template(
        template, m, g, special_tokens={"bos_token": "<s>", "eos_token": "</s>"}, tools=t, template_kwargs=variables))


@pytest.fixture(scope="module")
def tool_outcomes(corpus):
    """{name: (derived, round-trip check)} for each corpus template that writes tools."""
    out = {}
    for name, template in sorted(corpus.items()):
        render = _corpus_render(template)
        try:
            derived = derive(render, render_tools=render)
        except TemplateNotExpressible:
            continue
        if derived.tools or derived.tools_refused:
            check = ollama.roundtrip_check(f'TEMPLATE """{derived.text}"""', render, [],
                                           ollama.check_conversations(derived),
                                           tool_conversations=ollama.tool_conversations(derived))
            out[name] = (derived, check)
    return out


def test_tool_capable_corpus_templates_round_trip_or_are_refused_by_name(tool_outcomes):
    kinds = {n: "refused" if d.tools_refused else "round-trip" if c["passed"] else "failed"
             for n, (d, c) in tool_outcomes.items()}
    counts = {k: sum(v == k for v in kinds.values()) for k in ("round-trip", "refused", "failed")}
    print(f"\n{len(kinds)} templates write tools: {counts}")
    for name, (derived, check) in tool_outcomes.items():
        detail = derived.tools_refused or (ollama.describe_failure(check) if not check["passed"] else
                                           f"prefix {derived.tool_call_prefix!r}")
        print(f"  {kinds[name]:10} {name}: {detail[:150]}")
    assert len(kinds) >= 55
    assert counts["round-trip"] >= 16 and counts["failed"] == 0
    for family in ("Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B", "meta-llama-Llama-3.1-8B-Instruct",
                   "meta-llama-Llama-3.2-3B-Instruct", "meta-llama-Llama-3.3-70B-Instruct",
                   "Mistral-Small-3.2-24B-Instruct-2506", "mistralai-Mistral-Nemo-Instruct-2407",
                   "unsloth-mistral-Devstral-Small-2507"):
        assert kinds[family] == "round-trip", family
    # Bielik 11B v3 opens a tool result differently in an agent's second round than in its first (with a system
    # message): position, not role, decides
    assert "depends on more than" in tool_outcomes["Bielik-11B-v3.0-Instruct"][0].tools_refused
    for tool_only in ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
                      "CohereForAI-c4ai-command-r-plus-tool_use"):
        assert kinds[tool_only] == "refused"  # Hermes: a Python signature in each description
    # Mistral Small 3.2: [TOOL_CALLS]name[CALL_ID]id[ARGS]{...} (the call's .ID), [TOOL_RESULTS]id[TOOL_CONTENT] (the
    # result's .ToolCallID), the tools before the last user message only
    small = tool_outcomes["Mistral-Small-3.2-24B-Instruct-2506"][0]
    assert "{{ $c.ID }}" in small.text and "{{ $m.ToolCallID }}" in small.text and "$lastUser" in small.text
    # Nemo: each call's id inside its JSON after the arguments, a result's id after its content (the .ToolCallID of
    # the result before, in the next opener), the system text in the last turn only when a user message ends it
    nemo = tool_outcomes["mistralai-Mistral-Nemo-Instruct-2407"]
    assert nemo[1]["passed"] and '{{ json $c.Function.Arguments }}{{ ", \\"id\\": \\"" }}{{ $c.ID }}' in nemo[0].text
    assert "{{ $prevId }}" in nemo[0].text
    qwen = tool_outcomes["Qwen-Qwen2.5-7B-Instruct"][0]
    assert qwen.tool_call_prefix == "<tool_call>" and "{{- if .ToolCalls }}<tool_call>" in qwen.text
    assert tool_outcomes["meta-llama-Llama-3.1-8B-Instruct"][0].tool_call_prefix == "{"


def test_go_renders_derived_tool_templates_like_python(tool_outcomes, go_render):
    checked = 0
    for name, (derived, check) in tool_outcomes.items():
        if not check["passed"] or not derived.tools:
            continue
        for messages, tools in ollama.tool_conversations(derived):
            values = ollama.ollama_values(messages, tools=tools)
            assert gotemplate.render(derived.text, values) == go_render(derived.text, values), name
            checked += 1
    assert checked >= 16 * 2


def test_compact_json_is_the_only_difference(corpus):
    """Llama 3.1 indents each tool (tojson(indent=4)): the texts differ there and nowhere else."""
    render = _corpus_render(corpus["meta-llama-Llama-3.1-8B-Instruct"])
    derived = derive(render, render_tools=render)
    messages, tools = ollama.TOOL_CONVERSATIONS[1]
    jinja = render(messages, True, tools)
    go = gotemplate.render(derived.text, ollama.ollama_values(messages, tools=tools))
    assert jinja != go and '    "type": "function"' in jinja and '{"type":"function","function":' in go
    assert ollama.compact_tool_json(jinja, tools, messages) == ollama.compact_tool_json(go, tools, messages)
    assert ollama.compact_tool_json(jinja.replace("Today Date", "Today  Date"), tools, messages) != \
        ollama.compact_tool_json(go, tools, messages)


@pytest.mark.parametrize("vocab,template,prefix", [("llama3.1", "meta-llama-Llama-3.1-8B-Instruct", "{"),
                                                   ("qwen3", "Qwen-Qwen3-0.6B", "<tool_call>")])
def test_bundle_keeps_tools_on_the_real_vocabulary(corpus, tmp_path, vocab, template, prefix):
    tok = hf_tokenizer(vocab)
    tok.chat_template = corpus[template]
    fmt = chat_format.from_tokenizer(tok)
    record = ollama.write_bundle(tmp_path / "m.gguf", tok, tmp_path, fmt, adds_bos=vocab == "llama3.1")
    assert record["modelfile"] == "m.Modelfile" and record["roundtrip"]["passed"], record
    tools = record["tools"]
    assert tools["in_modelfile"] and tools["refused"] is None and tools["call_prefix"] == prefix
    saved = tools["compact_json"]
    print(f"\n{template} on {vocab}: compact tool JSON saves {saved}")
    assert saved["conversations"] >= 2 and saved["chars_saved"] > 0 and saved["tokens_saved"] > 0
    text = (tmp_path / "m.Modelfile").read_text()
    assert "{{- $tools := .Tools }}" in text and "{{- if .ToolCalls }}" in text  # Ollama's `tools` capability
    if vocab == "llama3.1":  # the end of a turn that called a tool is a turn end everywhere, not only in Ollama
        assert "<|eom_id|>" in fmt.end_of_turn and "<|eom_id|>" in ollama.parse_modelfile(text)["stops"]
    assert any(n.startswith("tools: Ollama writes") for n in record["notes"])


def test_bundle_without_round_tripping_tools_is_chat_only(corpus, tmp_path):
    """Qwen 2.5's template, altered to write a tool result that is JSON as a JSON string: no probe result is JSON, so
    the derived Go template writes it plain, and the round trip on a JSON result fails."""
    tok = hf_tokenizer("qwen3")
    plain = "{{- message.content }}\n        {{- '\\n</tool_response>' }}"
    assert plain in corpus["Qwen-Qwen2.5-7B-Instruct"]
    tok.chat_template = corpus["Qwen-Qwen2.5-7B-Instruct"].replace(plain, plain.replace(
        "message.content", "message.content | tojson if message.content.startswith('{') else message.content"))
    record = ollama.write_bundle(tmp_path / "m.gguf", tok, tmp_path, chat_format.from_tokenizer(tok))
    assert record["modelfile"] == "m.Modelfile" and record["roundtrip"]["passed"], record
    assert not record["tools"]["in_modelfile"] and "round trip fails" in record["tools"]["refused"]
    assert ".Tools" not in (tmp_path / "m.Modelfile").read_text()


def test_text_and_reasoning_beside_calls_are_written_where_the_template_writes_them(tool_outcomes):
    """An assistant's text beside its calls ("Let me check.", then the call) and its reasoning are written by the Go
    template where the Jinja one writes them (Qwen: the text and a newline before <tool_call>; Qwen 3's reasoning of
    the turn in progress only), dropped where it drops them (Llama 3.x), and checked both ways (the round trip's
    conversations include bundle.CALL_TEXT_CONVERSATION and THINKING_CONVERSATIONS)."""
    outcomes = {n: (d.call_text, d.call_thinking) for n, (d, c) in tool_outcomes.items() if d.tools}
    print(f"\ntext, reasoning beside calls: {sorted(outcomes.items(), key=lambda kv: kv[1])}")
    texts, thoughts = [t for t, _ in outcomes.values()], [r for _, r in outcomes.values()]
    assert set(texts) <= {"written", "dropped"} and texts.count("written") >= 10
    assert set(thoughts) <= {"written (always)", "written (after last user)", "dropped"}
    for name, (derived, check) in tool_outcomes.items():
        if derived.tools:
            conversations = ollama.tool_conversations(derived)
            assert check["passed"] and ollama.CALL_TEXT_CONVERSATION in conversations, name
            assert all(c in conversations for c in [*ollama.THINKING_CONVERSATIONS, ollama.THINKING_AND_TEXT]), name
    qwen3 = tool_outcomes["Qwen-Qwen3-0.6B"][0]
    assert qwen3.call_text == "written"
    assert ('<|im_start|>assistant\\n" }}{{ if and $m.Thinking (gt $i $lastUser) }}{{ "<think>\\n" }}{{ $m.Thinking }}'
            '{{ "\\n</think>\\n\\n" }}{{ end }}{{ if $m.Content }}{{ $m.Content }}{{ "\\n" }}{{ end }}') in qwen3.text
    assert tool_outcomes["Qwen-Qwen2.5-7B-Instruct"][0].call_text == "written"
    assert tool_outcomes["meta-llama-Llama-3.1-8B-Instruct"][0].call_text == "dropped"
    messages, tools = ollama.CALL_TEXT_CONVERSATION
    text = gotemplate.render(qwen3.text, ollama.ollama_values(messages, tools=tools))
    assert "<|im_start|>assistant\nLet me check Oslo's weather.\n<tool_call>\n" in text
    assert qwen3.call_thinking == "written (after last user)"
    in_progress, finished = (gotemplate.render(qwen3.text, ollama.ollama_values(m, tools=t))
                             for m, t in ollama.THINKING_CONVERSATIONS)
    assert "<|im_start|>assistant\n<think>\nOslo: ask get_weather.\n</think>\n\n<tool_call>\n" in in_progress
    assert "Oslo: ask" not in finished  # Qwen 3 drops the reasoning of turns before the last user message
    both = gotemplate.render(qwen3.text, ollama.ollama_values(*ollama.THINKING_AND_TEXT))
    assert "<think>\nOslo: ask get_weather.\n</think>\n\nLet me check Oslo's weather.\n<tool_call>\n" in both


def test_text_beside_calls_written_elsewhere_is_left_out_and_said(corpus, tmp_path):
    """Qwen 2.5's template altered to write the text after each call, where Ollama's template cannot: the bundle keeps
    its tools without that text, checks them on conversations without it, and says so."""
    tok = hf_tokenizer("qwen3")
    end = "{{- '}\\n</tool_call>' }}"
    assert end in corpus["Qwen-Qwen2.5-7B-Instruct"]
    tok.chat_template = corpus["Qwen-Qwen2.5-7B-Instruct"].replace(end, end[:-3] + " + (message.content or '') }}")
    record = ollama.write_bundle(tmp_path / "m.gguf", tok, tmp_path, chat_format.from_tokenizer(tok))
    assert record["roundtrip"]["passed"] and record["tools"]["in_modelfile"], record
    assert record["tools"]["call_text"] == "not written" and record["tools"]["call_thinking"] == "dropped"
    assert any("text beside its tool calls is not written" in n for n in record["notes"])


def test_agent_loop_calls_after_a_tool_result(tool_outcomes):
    """A call straight after a tool result (an agent's second step) opens its assistant turn as the Jinja template
    does, in every template whose tools round-trip: the loop is one of the checked conversations."""
    loop = ollama.TOOL_CONVERSATIONS[3]
    assert [m["role"] for m in loop[0]] == ["user", "assistant", "tool", "assistant", "tool"]
    for name, (derived, check) in tool_outcomes.items():
        if derived.tools:
            assert check["passed"] and loop in ollama.tool_conversations(derived), name
    text = gotemplate.render(tool_outcomes["Qwen-Qwen3-0.6B"][0].text, ollama.ollama_values(*loop))
    assert ("<tool_response>\n-3\n</tool_response><|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
            '{"name": "get_weather", "arguments": {"city":"Bergen"}}') in text


def test_reasoning_written_in_every_turn(corpus):
    """Qwen 3's template altered to keep every turn's reasoning, not only the turn in progress's: the Go template
    writes .Thinking without the last-user test, and the round trip (a finished turn's reasoning too) passes."""
    in_progress = "{%- if loop.index0 > ns.last_query_index %}"
    assert in_progress in corpus["Qwen-Qwen3-0.6B"]
    render = _corpus_render(corpus["Qwen-Qwen3-0.6B"].replace(in_progress, "{%- if true %}"))
    derived = derive(render, render_tools=render)
    assert derived.call_thinking == "written (always)" and "{{ if $m.Thinking }}" in derived.text
    check = ollama.roundtrip_check(f'TEMPLATE """{derived.text}"""', render, [], ollama.check_conversations(derived),
                                   tool_conversations=ollama.tool_conversations(derived))
    assert check["passed"] and ollama.THINKING_CONVERSATIONS[1] in ollama.tool_conversations(derived)
    finished = gotemplate.render(derived.text, ollama.ollama_values(*ollama.THINKING_CONVERSATIONS[1]))
    assert "<think>\nOslo: ask get_weather.\n</think>" in finished


def test_reasoning_after_the_text_is_left_out(corpus):
    """Qwen 3's template altered to write the reasoning after the text: each alone sits before the calls, but the Go
    template writes reasoning then text, so the reasoning is not written (and the round trip, without reasoning,
    passes)."""
    original = "'\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n')"
    assert original in corpus["Qwen-Qwen3-0.6B"]
    swapped = "'\\n' + content.lstrip('\\n') + '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n'"
    render = _corpus_render(corpus["Qwen-Qwen3-0.6B"].replace(original, swapped))
    derived = derive(render, render_tools=render)
    assert (derived.call_text, derived.call_thinking) == ("written", "not written")
    assert "$m.Thinking" not in derived.text
    check = ollama.roundtrip_check(f'TEMPLATE """{derived.text}"""', render, [], ollama.check_conversations(derived),
                                   tool_conversations=ollama.tool_conversations(derived))
    assert check["passed"] and ollama.THINKING_AND_TEXT not in ollama.tool_conversations(derived)


def test_template_without_tools_records_none(default_ckpt, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(default_ckpt.path))
    record = ollama.write_bundle(tmp_path / "m.gguf", tok, tmp_path, chat_format.from_tokenizer(tok))
    assert record["tools"] == {"template_renders_tools": False, "in_modelfile": False, "refused": None,
                               "call_prefix": None, "call_text": None, "call_thinking": None}
    assert not any(n.startswith("tools: ") for n in record["notes"])

"""Tool calls: parsing a model's text by its template's syntax (on text the real templates of llama.cpp's corpus
write for an assistant's tool calls, and as models write it), the tool_call scorer through `wb eval --outputs`,
and BFCL's own files as a suite task (`format: bfcl`)."""

import json
import shutil
import tarfile
from importlib import resources
from pathlib import Path

import pytest
from hostile_support import Workspace, assert_refused, run_cli, snapshot

from workbench.chat.template import render_template
from workbench.runtimes.llamacpp.tools import sdist_cache
from workbench.toolcalls.calls import ToolCall
from workbench.toolcalls.parse import parse_calls, syntax_of_template

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}]
CALLS = [ToolCall("get_weather", {"city": "Paris", "days": 3}), ToolCall("get_weather", {"city": "Oslo"})]
# corpus template -> (its syntax, how many calls it writes in one assistant message)
TEMPLATES = {"Qwen-Qwen2.5-7B-Instruct": ("hermes", 2), "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": ("hermes", 2),
             "Qwen-Qwen3-0.6B": ("hermes", 2), "meta-llama-Llama-3.1-8B-Instruct": ("llama3", 1),
             "meta-llama-Llama-3.2-3B-Instruct": ("llama3", 1), "mistralai-Mistral-Nemo-Instruct-2407": ("mistral", 2),
             "Mistral-Small-3.2-24B-Instruct-2506": ("mistral", 2), "openai-gpt-oss-120b": ("harmony", 1)}


@pytest.fixture(scope="module")
def corpus() -> dict[str, str]:
    archives = sorted(sdist_cache().glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        pytest.skip(f"needs the llama-cpp-python sdist in {sdist_cache()} (scripts/setup.sh downloads it)")
    with tarfile.open(archives[-1]) as tar:
        return {Path(m.name).stem: tar.extractfile(m).read().decode() for m in tar.getmembers()
                if "/vendor/llama.cpp/models/templates/" in m.name and Path(m.name).stem in TEMPLATES}


@pytest.mark.parametrize("name", TEMPLATES)
def test_parses_what_the_template_writes(corpus, name):
    """The text after the generation prompt, as the template renders an assistant's tool calls (what a model
    trained on it writes), parses back to those calls in the syntax read from the template."""
    template, (syntax, n) = corpus[name], TEMPLATES[name]
    assert syntax_of_template(template) == syntax
    user = [{"role": "user", "content": "The weather in Paris and Oslo?"}]
    calls = [dict(c.to_template(), id=f"abcde{i:04d}") for i, c in enumerate(CALLS[:n])]
    tokens = {"bos_token": "<s>", "eos_token": "</s>"}
    prompt = render_template(template, user, True, special_tokens=tokens, tools=TOOLS)
    full = render_template(template, user + [{"role": "assistant", "content": "", "tool_calls": calls}], False,
                           special_tokens=tokens, tools=TOOLS)
    assert full.startswith(prompt)
    parsed = parse_calls(full[len(prompt):], syntax)
    assert parsed.status == "calls" and parsed.calls == CALLS[:n], (full[len(prompt):], parsed)


@pytest.mark.parametrize("text, status, calls, free", [
    # Hermes/Qwen with prose before, generation cut at the stop token (no closing tag)
    ('I will look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}', "calls",
     [ToolCall("get_weather", {"city": "Paris"})], "I will look."),
    # Llama 3.x after <|python_tag|>, several calls separated by ';', ended by <|eom_id|>
    (('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
     '{"name": "get_weather", "parameters": {"city": "Oslo"}}<|eom_id|>'), "calls",
     [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Oslo"})], ""),
    # Llama 3.x plain JSON, in a markdown fence
    ('```json\n{"name": "get_weather", "parameters": {"city": "Paris", "days": 2}}\n```', "calls",
     [ToolCall("get_weather", {"city": "Paris", "days": 2})], ""),
    # Mistral v0.3: a JSON list; arguments as JSON text (OpenAI's way)
    ('[TOOL_CALLS] [{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}]</s>', "calls",
     [ToolCall("get_weather", {"city": "Oslo"})], ""),
    # Mistral's newer NAME[ARGS]{...}, twice
    ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}</s>', "calls",
     [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Oslo"})], ""),
    # gpt-oss: the analysis channel, then the call on the commentary channel
    (('<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary '
     'to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>'), "calls",
     [ToolCall("get_weather", {"city": "Paris"})], ""),
    # OpenAI's shape in plain JSON
    ('[{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]', "calls",
     [ToolCall("get_weather", {"city": "Oslo"})], ""),
    ("It is sunny in Paris today, I think.", "no_call", [], "It is sunny in Paris today, I think."),
    ("[]", "no_call", [], "[]"),
    # SmolLM2's function-calling format: a list in one block; the empty list is its way to make no call
    ('<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n]</tool_call>', "calls",
     [ToolCall("get_weather", {"city": "Paris"})], ""),
    ("<tool_call>[]</tool_call>", "no_call", [], ""),
    # attempts that do not parse
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>', "unparseable", [], None),
    ('<tool_call>\n{"arguments": {"city": "Paris"}}\n</tool_call>', "unparseable", [], None),
    ('{"name": "get_weather", "arguments": {"city": Paris}}', "unparseable", [], None),
    ('[TOOL_CALLS]get_weather[ARGS]{"city": ', "unparseable", [], None),
    ("<tool_call>\n", "unparseable", [], None),  # cut right after the tag
    ('<|python_tag|>{"name": "get_weather", "parameters": ["Paris"]}', "unparseable", [], None),
])
def test_parse_syntaxes(text, status, calls, free):
    parsed = parse_calls(text)
    assert parsed.status == status, parsed
    assert parsed.calls == calls
    if free is not None:
        assert parsed.text == free
    assert parsed.parsed == (status != "unparseable")
    if status == "unparseable":
        assert parsed.error


def _tool_suite(ws: Workspace) -> Path:
    rows = [
        {"id": "paris", "prompt": "Weather in Paris for 3 days?", "tools": TOOLS,
         "reference": [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]},
        {"id": "both", "prompt": "Paris and Oslo?", "tools": TOOLS,
         "possible_answer": [{"get_weather": {"city": ["Paris"], "days": [""]}},
                             {"get_weather": {"city": ["Oslo", "oslo, norway"], "days": ["", 1]}}]},
        {"id": "none", "prompt": "Tell me a joke.", "tools": TOOLS, "reference": []},
        {"id": "bad", "prompt": "Weather in Rome?", "tools": TOOLS,
         "reference": [{"name": "get_weather", "arguments": {"city": "Rome", "days": 2}}]},
        {"id": "prose", "prompt": "Weather in Bern?", "tools": TOOLS,
         "reference": [{"name": "get_weather", "arguments": {"city": "Bern"}}]},
    ]
    ws.file("tools.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return ws.file("tools.yaml", "name: tools\ntasks:\n  - name: calls\n    data: tools.jsonl\n"
                                 "    scorers: [{type: tool_call, name: tool}]\n")


def test_tool_call_scorer_on_recorded_outputs(tmp_path, monkeypatch, capsys):
    ws = Workspace(tmp_path, monkeypatch)
    suite = _tool_suite(ws)
    outputs = {
        "paris": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "paris", "days": 3}}\n</tool_call>',
        # parallel calls in the other order; "Oslo, Norway" normalizes to an allowed value
        "both": '[{"name": "get_weather", "arguments": {"city": "Oslo, Norway"}}, '
                '{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        "none": "Why did the chicken cross the road?",
        "bad": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": "two"}}\n</tool_call>',
        "prose": '<tool_call>{"name": "get_weather", "arguments": {"city": "Bern"</tool_call>',
    }
    answers = ws.file("answers.jsonl", "".join(json.dumps({"id": k, "output": v}) + "\n" for k, v in outputs.items()))
    res = run_cli(["eval", "--outputs", answers, "--suite", suite, "--json"], capsys)
    assert res.code == 0, res.stderr
    metrics = {m["metric"]: (m["value"], m["n"]) for m in json.loads(res.stdout)["metrics"]}
    assert metrics["tool"] == (pytest.approx(3 / 5), 5)
    assert metrics["tool.unparseable"][0] == pytest.approx(1 / 5)
    assert metrics["tool.wrong"][0] == pytest.approx(1 / 5)
    assert metrics["tool.no_call"][0] == 0
    better = {m["metric"]: m["higher_is_better"] for m in json.loads(res.stdout)["metrics"]}
    assert better == {"tool": True, "tool.unparseable": False, "tool.wrong": False, "tool.no_call": False}
    run = next((ws.store / "runs").glob("*/samples/calls.jsonl"), None) or next(ws.store.rglob("calls.jsonl"))
    samples = {s["id"]: s for s in map(json.loads, run.read_text().splitlines())}
    assert samples["bad"]["explanations"]["tool"].startswith("wrong: parameter 'days': type str")
    assert samples["prose"]["explanations"]["tool"].startswith("unparseable:")
    assert samples["none"]["explanations"]["tool"] == "correct: no call expected, none made"


def test_bad_tool_items_refused(tmp_path, monkeypatch, capsys):
    ws = Workspace(tmp_path, monkeypatch)
    row = {"id": "x", "prompt": "Weather?", "tools": TOOLS, "reference": [{"name": "get_time", "arguments": {}}]}
    ws.file("t.jsonl", json.dumps(row) + "\n")
    suite = ws.file("t.yaml", "name: t\ntasks:\n  - {name: c, data: t.jsonl, scorers: [{type: tool_call}]}\n")
    answers = ws.file("a.jsonl", json.dumps({"id": "x", "output": "hi"}) + "\n")
    before = snapshot(ws.root)
    res = run_cli(["eval", "--outputs", answers, "--suite", suite], capsys)
    assert_refused(res, 3, ("t.yaml", "item 'x'", "get_time"), before, ws.root)


def _bfcl_file(category: str) -> Path:
    pytest.importorskip("bfcl_eval", reason="bfcl-eval (scripts/setup.sh installs it)")
    return Path(str(resources.files("bfcl_eval") / "data" / f"BFCL_v4_{category}.json"))


def test_bfcl_format_suite(tmp_path, monkeypatch, capsys):
    """A BFCL question file with its possible answers as a task; BFCL's own ground truth, written as Hermes calls,
    scores 1 on each item; a file without its possible-answer file is refused, nothing written."""
    ws = Workspace(tmp_path, monkeypatch)
    source = _bfcl_file("parallel")
    (ws.inputs / "possible_answer").mkdir()
    shutil.copy(source, ws.inputs / source.name)
    shutil.copy(source.parent / "possible_answer" / source.name, ws.inputs / "possible_answer" / source.name)
    suite = ws.file("bfcl.yaml", f"name: bfcl\ntasks:\n  - name: parallel\n    data: {source.name}\n"
                                 "    format: bfcl\n    scorers: [{type: tool_call, tool_syntax: hermes}]\n")
    truth = [json.loads(line) for line in (ws.inputs / "possible_answer" / source.name).read_text().splitlines()][:5]
    lines = []
    for row in truth:
        calls = [{"name": n, "arguments": {k: v[0] for k, v in p.items() if v[0] != ""}}
                 for answer in row["ground_truth"] for n, p in answer.items()]
        lines.append({"id": row["id"], "output": "".join(f"<tool_call>{json.dumps(c)}</tool_call>" for c in calls)})
    answers = ws.file("a.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    # --outputs needs every item's answer: the suite is limited to the 5 answered
    suite.write_text(suite.read_text().replace("format: bfcl", "format: bfcl\n    limit: 5"))
    res = run_cli(["eval", "--outputs", answers, "--suite", suite, "--json"], capsys)
    assert res.code == 0, res.stderr
    metrics = {m["metric"]: (m["value"], m["n"]) for m in json.loads(res.stdout)["metrics"]}
    assert metrics["tool_call"] == (1.0, 5)

    (ws.inputs / "possible_answer" / source.name).unlink()
    before = snapshot(ws.root)
    res = run_cli(["eval", "--outputs", answers, "--suite", suite], capsys)
    assert_refused(res, 3, (source.name, "possible-answer"), before, ws.root)


def test_bfcl_java_items_as_tools():
    """BFCL's Java functions become string parameters holding source text (as BFCL hands them to function-calling
    models); the checker keeps BFCL's own types and reads the text with bfcl-eval's converters."""
    from workbench.config import ScorerSpec
    from workbench.eval.scorers import tool_call_values
    from workbench.toolcalls.bfcl_data import load_bfcl_items

    items = load_bfcl_items(_bfcl_file("simple_java"))
    item = next(it for it in items if it["id"] == "simple_java_1")
    assert item["language"] == "java" and item["metadata"] == {"category": "simple_java"}
    props = item["tools"][0]["function"]["parameters"]["properties"]
    assert {p["type"] for p in props.values()} == {"string"} and "Java HashMap type" in props["params"]["description"]
    assert item["functions"][0]["parameters"]["properties"]["params"]["type"] == "HashMap"
    spec = ScorerSpec(type="tool_call")
    call = {"name": "SQLCompletionAnalyzer.makeProposalsFromObject", "arguments": {
        "object": "Customers", "useShortName": "true",
        "params": 'new HashMap<String, Object>() {{ put("limit", 50); put("schemaFilter", "public"); }}'}}
    assert tool_call_values(spec, item, json.dumps(call)).values["tool_call"] == 1.0
    call["arguments"]["useShortName"] = True  # a JSON bool, not Java source text
    scored = tool_call_values(spec, item, json.dumps(call))
    assert scored.values["tool_call.wrong"] == 1.0 and "useShortName" in scored.explanation

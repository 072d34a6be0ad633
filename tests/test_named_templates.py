"""The named chat templates (workbench/chat/templates) render the text the family's real template renders: each is
compared with the official template of its family in llama.cpp's corpus on plain conversations and, where the
family has them, tools, tool calls (parallel ones too), tool results and thinking. And a recipe's or
`--chat-template`'s choice: an unknown name is refused with the valid names."""

import json

import pytest

from tests.chat_templates import GEMMA3, llama_cpp_corpus
from workbench.chat.named import NAMES, choose_template, named_template
from workbench.chat.template import render_template
from workbench.errors import BadInput

TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}
U1, A1, U2 = ({"role": "user", "content": "  What is 2 + 2?\n"}, {"role": "assistant", "content": "4 "},
              {"role": "user", "content": "And times 3?"})
SYSTEM = {"role": "system", "content": "You answer briefly."}
PLAIN = [[U1], [U1, A1], [U1, A1, U2]]
WITH_SYSTEM = [[SYSTEM, U1], [SYSTEM, U1, A1], [SYSTEM, U1, A1, U2]]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {
        "type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Local time",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
ASK = {"role": "user", "content": "Weather in Paris, in celsius?"}


def _call(name, args, call_id="abcDEF123"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


ONE_CALL = {"role": "assistant", "content": "",
            "tool_calls": [_call("get_weather", {"city": "Paris", "unit": "celsius"})]}
RESULT = {"role": "tool", "tool_call_id": "abcDEF123", "content": json.dumps({"temperature": 21})}
ANSWER = {"role": "assistant", "content": "It is 21 °C in Paris."}
TOOL_CONVERSATIONS = [[ASK], [SYSTEM, ASK], [ASK, ONE_CALL, RESULT], [SYSTEM, ASK, ONE_CALL, RESULT, ANSWER]]
PARALLEL = {"role": "assistant", "content": "Checking both.", "tool_calls": [
    _call("get_weather", {"city": "Paris"}, "call00001"), _call("get_time", {"city": "Paris"}, "call00002")]}
PARALLEL_CONVERSATIONS = [[ASK, PARALLEL, {"role": "tool", "tool_call_id": "call00001", "content": "21"},
                           {"role": "tool", "tool_call_id": "call00002", "content": "14:00"}]]
THINKING = [
    [U1, {"role": "assistant", "content": "4", "reasoning_content": "\nTwo and two.\n"}],
    [U1, {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"}, U2],
    [U1, {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"}],
    [ASK, {**ONE_CALL, "reasoning_content": "Need the weather."}, RESULT],
]

# name -> [(reference in llama.cpp's corpus or a template text, conversations, with tools)]
CASES = {
    "chatml": [("Qwen-Qwen2.5-7B-Instruct", WITH_SYSTEM, False)],  # Qwen 2.5 adds a system of its own otherwise
    "llama3": [("meta-llama-Llama-3.1-8B-Instruct", PLAIN + WITH_SYSTEM, False),
               ("meta-llama-Llama-3.1-8B-Instruct", TOOL_CONVERSATIONS, True),
               ("meta-llama-Llama-3.3-70B-Instruct", PLAIN + WITH_SYSTEM, False)],
    "gemma": [("google-gemma-2-2b-it", PLAIN, False), (GEMMA3, PLAIN + WITH_SYSTEM, False)],
    "mistral": [("mistralai-Mistral-Nemo-Instruct-2407", PLAIN + WITH_SYSTEM, False),
                ("mistralai-Mistral-Nemo-Instruct-2407", TOOL_CONVERSATIONS + PARALLEL_CONVERSATIONS, True)],
    "phi3": [("microsoft-Phi-3.5-mini-instruct", PLAIN + WITH_SYSTEM, False)],
    "qwen3": [("Qwen-Qwen3-0.6B", PLAIN + WITH_SYSTEM + THINKING, False),
              ("Qwen-Qwen3-0.6B", TOOL_CONVERSATIONS + PARALLEL_CONVERSATIONS + THINKING, True)],
}


@pytest.fixture(scope="module")
def corpus() -> dict[str, str]:
    templates = llama_cpp_corpus()
    if not templates:
        pytest.skip("needs the llama-cpp-python sdist (scripts/setup.sh downloads it)")
    return templates


def _renderings(template: str, conversations, tools, **kwargs) -> list[str]:
    out = []
    for conversation in conversations:
        last = conversation[-1]["role"]
        for generation in ([True] if last != "assistant" else [False]):
            out.append(render_template(template, conversation, generation, special_tokens=TOKENS,
                                       tools=[WEATHER, TIME] if tools else None, template_kwargs=kwargs))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_named_template_renders_as_the_family_does(name, corpus):
    assert set(CASES) == set(NAMES)
    ours = named_template(name)
    compared = 0
    for reference, conversations, tools in CASES[name]:
        theirs = corpus.get(reference, reference)
        assert theirs != reference or reference.startswith("{"), f"{reference} is not in llama.cpp's corpus"
        expected = _renderings(theirs, conversations, tools)
        assert _renderings(ours, conversations, tools) == expected, reference
        compared += len(expected)
    if name == "qwen3":  # the generation prompt with thinking off, as Qwen 3's enable_thinking=false renders it
        for tools in (False, True):
            off = _renderings(corpus["Qwen-Qwen3-0.6B"], [[U1], [ASK]], tools, enable_thinking=False)
            assert _renderings(ours, [[U1], [ASK]], tools, enable_thinking=False) == off
            assert all(text.endswith("<think>\n\n</think>\n\n") for text in off)
            compared += len(off)
    assert compared >= 3


def test_tool_templates_render_the_tools():
    """qwen3, llama3 and mistral put the declared functions and the calls in the text (the bundled tools recipe
    trains on qwen3); the others have no tool syntax."""
    for name in ("qwen3", "llama3", "mistral"):
        text = render_template(named_template(name), [ASK, ONE_CALL, RESULT], True, special_tokens=TOKENS,
                               tools=[WEATHER])
        assert '"get_weather"' in text and "Paris" in text and '"temperature": 21' in text.replace('\\"', '"')


def test_a_choice_by_name_or_file(tmp_path):
    chosen = choose_template("chatml")
    assert chosen.source == "chatml" and chosen.text == named_template("chatml") and len(chosen.sha256) == 64
    (tmp_path / "mine.jinja").write_text(named_template("phi3"))
    from_file = choose_template("mine.jinja", relative_to=tmp_path)
    assert from_file.text == named_template("phi3") and from_file.source == str((tmp_path / "mine.jinja").resolve())
    with pytest.raises(BadInput, match=r"chat_template: 'chatm1' is not a named template \(chatml, gemma, llama3, "
                                       r"mistral, phi3, qwen3\) or a \.jinja file"):
        choose_template("chatm1")
    with pytest.raises(BadInput, match="no such file"):
        choose_template("missing.jinja", relative_to=tmp_path)
    (tmp_path / "broken.jinja").write_text("{% for m in messages %}{{ m.content }")
    with pytest.raises(BadInput, match="does not render"):
        choose_template(str(tmp_path / "broken.jinja"))

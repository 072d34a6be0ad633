"""The deterministic checks of a replayed answer, which need no judge: JSON validity where the logged answer was
JSON, tool-call validity against the logged `tools` schemas, refusal, empty answer, length. Each is computed per
side (candidate, baseline) on every conversation it applies to; a check that does not apply is None.

- `json_valid` applies where the logged answer's text parses as a JSON object or array: the side's text must too
  (a ```json fence around it is allowed).
- `tool_call_valid` applies where the conversation offers `tools` and either the logged answer made a tool call or
  the side's answer is one. The side's calls (OpenAI `tool_calls`, else the calls its text writes, read by
  workbench.toolcalls.parse in whichever syntax its markers show: `<tool_call>`, `[TOOL_CALLS]`, `<|python_tag|>`,
  Harmony, or plain JSON {"name", "arguments"}) must each name an offered function, with arguments valid against
  that function's `parameters` JSON Schema (jsonschema). A call that does not parse is invalid; so is a text
  answer where the log called a tool.
- `refusal`: the answer contains one of REFUSAL_PHRASES (case-insensitive).
- `empty`: no text (after stripping) and no tool call.
- `length_chars`: the answer's text length in characters.
"""

import json
import re

from workbench.system.extras import require
from workbench.toolcalls.calls import ToolCall
from workbench.toolcalls.parse import parse_calls

REFUSAL_PHRASES = (
    "i can't help", "i cannot help", "i can't assist", "i cannot assist", "i can't provide", "i cannot provide",
    "i'm sorry, but", "i am sorry, but", "i'm unable to", "i am unable to", "i'm not able to", "i am not able to",
    "i won't be able to", "i will not be able to", "as an ai", "i must decline", "i can't comply", "i cannot comply",
)
"""Phrases that mark a refusal (matched case-insensitively anywhere in the answer; ’ read as ')."""

CHECKS = ("json_valid", "tool_call_valid", "refusal", "empty", "length_chars")
LOWER_IS_BETTER = {"refusal", "empty"}
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def answer_text(answer: dict | str | None) -> str:
    """An answer as the judge and the text checks read it: its content, else its tool calls as JSON
    ({"name", "arguments"} per call)."""
    if answer is None:
        return ""
    if isinstance(answer, str):
        return answer
    content = answer.get("content")
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content and str(content).strip():
        return str(content)
    calls = tool_calls(answer)
    if calls:
        shown = [{"name": c.name, "arguments": c.arguments} for c in calls]
        return json.dumps(shown[0] if len(shown) == 1 else shown)
    return ""


def _json_value(text: str):
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None


def tool_calls(answer: dict | str | None) -> list[ToolCall] | None:
    """The answer's tool calls: OpenAI `tool_calls`, else the calls its text writes in any syntax
    workbench.toolcalls.parse reads; None when it makes no call. A call that does not parse, or whose arguments are
    not a JSON object, becomes a nameless call (and fails validity)."""
    if isinstance(answer, dict) and answer.get("tool_calls"):
        calls = []
        for raw in answer["tool_calls"]:
            try:
                calls.append(ToolCall.from_openai(raw))
            except (ValueError, KeyError, TypeError, json.JSONDecodeError):
                calls.append(ToolCall(name="", arguments={}))
        return calls
    text = answer if isinstance(answer, str) else (answer or {}).get("content")
    if not isinstance(text, str):
        return None
    parsed = parse_calls(text)
    if parsed.status == "unparseable":
        return [ToolCall(name="", arguments={})]
    return parsed.calls or None


def _call_valid(call: ToolCall, tools: list[dict]) -> bool:
    jsonschema = require("jsonschema", "wb replay's tool-call check", "judge")
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if fn.get("name") == call.name:
            schema = fn.get("parameters") or {"type": "object"}
            try:
                return jsonschema.validators.validator_for(schema)(schema).is_valid(call.arguments)
            except jsonschema.exceptions.SchemaError:
                return False
    return False


def check_answer(answer: dict | str | None, *, logged: dict | str | None, tools: list[dict] | None) -> dict:
    """The checks of one side's answer to one conversation (None where a check does not apply)."""
    text = answer_text(answer)
    calls = tool_calls(answer)
    logged_calls = tool_calls(logged) if logged is not None else None
    logged_value = _json_value(answer_text(logged)) if logged is not None and not logged_calls else None
    json_valid = None
    if isinstance(logged_value, (dict, list)):
        json_valid = float(isinstance(_json_value(text), (dict, list)))
    tool_valid = None
    if tools and (calls or logged_calls):
        tool_valid = float(bool(calls) and all(_call_valid(c, tools) for c in calls))
    lowered = text.lower().replace("\u2019", "'")
    return {"json_valid": json_valid, "tool_call_valid": tool_valid,
            "refusal": float(any(p in lowered for p in REFUSAL_PHRASES)),
            "empty": float(not text.strip() and not calls), "length_chars": float(len(text))}

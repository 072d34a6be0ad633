"""Tool-call data in training and eval rows, in OpenAI's shape: `tools` (JSON-schema function specs) on the row,
assistant `tool_calls`, `tool` role results; and ShareGPT's `function_call` / `observation` turns as tool datasets
write them (LLaMA-Factory's glaive and xLAM conversions: the call as JSON text `{"name", "arguments"}` or a list of
them, `tools` as JSON text). Each call must name a declared function with arguments valid against its schema
(jsonschema); a template that renders the same with and without `tools` cannot teach or prompt them.
"""

import json

from workbench.errors import BadInput
from workbench.system.extras import require
from workbench.toolcalls.calls import ToolCall


def parse_tools(where: str, value) -> list[dict]:
    """A row's `tools`: OpenAI specs `{"type": "function", "function": {name, description, parameters}}` or bare
    `{name, description, parameters}` (glaive/xLAM), as a list or as its JSON text; returned in OpenAI's shape."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadInput(f"{where}: tools: not JSON (expected a list of function specs)") from None
    if not isinstance(value, list):
        raise BadInput(f"{where}: tools: expected a list of function specs")
    jsonschema = require("jsonschema", "Checking tool-call data", "train")
    out, names = [], set()
    for i, spec in enumerate(value):
        fn = spec.get("function", spec) if isinstance(spec, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise BadInput(f"{where}: tools.{i}: expected {{type: function, function: {{name, parameters}}}}")
        if fn["name"] in names:
            raise BadInput(f"{where}: tools.{i}: function '{fn['name']}' declared twice")
        names.add(fn["name"])
        params = fn.get("parameters", {"type": "object", "properties": {}})
        try:
            jsonschema.validators.validator_for(params).check_schema(params)
        except (jsonschema.SchemaError, TypeError, AttributeError) as exc:
            reason = getattr(exc, "message", str(exc))
            raise BadInput(f"{where}: tools.{i}.function.parameters: not a JSON schema ({reason})") from None
        out.append({"type": "function", "function": {**fn, "parameters": params}})
    return out


def chat_message(where: str, field: str, m, roles) -> dict:
    """A message as {role, content} (role in `roles`); an assistant turn may carry `tool_calls` (its content may
    then be empty or null), a tool turn its `tool_call_id` / `name`."""
    calls = m.get("tool_calls") if isinstance(m, dict) and m.get("role") == "assistant" else None
    content = m.get("content") if isinstance(m, dict) else None
    if calls and content is None:
        content = ""
    if isinstance(m, dict) and m.get("role") == "tool" and isinstance(content, (dict, list)):
        content = json.dumps(content)  # a tool result given as JSON
    if not isinstance(m, dict) or m.get("role") not in roles or not isinstance(content, str):
        raise BadInput(f"{where}: {field}: expected {{role, content}} with role in {sorted(roles)}")
    out = {"role": m["role"], "content": content}
    if calls is not None:
        out["tool_calls"] = parse_calls(f"{where}: {field}.tool_calls", calls)
    if m["role"] == "tool":
        out.update({k: m[k] for k in ("tool_call_id", "name") if isinstance(m.get(k), str)})
    return out


def parse_calls(where: str, value) -> list[dict]:
    """Assistant `tool_calls` (OpenAI entries, arguments as JSON text or an object) in the form templates read."""
    if not isinstance(value, list) or not value:
        raise BadInput(f"{where}: expected a non-empty list of tool calls")
    out = []
    for i, call in enumerate(value):
        try:
            parsed = ToolCall.from_openai(call)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadInput(f"{where}.{i}: expected {{function: {{name, arguments}}}} ({exc})") from None
        out.append({**({"id": call["id"]} if isinstance(call.get("id"), str) else {}), **parsed.to_template()})
    return out


def sharegpt_calls(where: str, text: str) -> list[dict]:
    """A ShareGPT `function_call` turn's value: JSON text of one `{"name", "arguments"}` or a list of them."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise BadInput(f"{where}: not JSON (a function_call turn holds {{\"name\", \"arguments\"}})") from None
    return parse_calls(where, value if isinstance(value, list) else [value])


def check_calls(where: str, tools: list[dict] | None, messages: list[dict], key: str = "messages") -> None:
    """Each assistant call names a function the row declares, with arguments valid against its schema."""
    calls = [(i, j, c) for i, m in enumerate(messages) for j, c in enumerate(m.get("tool_calls") or [])]
    if not calls:
        return
    jsonschema = require("jsonschema", "Checking tool-call data", "train")
    declared = {t["function"]["name"]: t["function"] for t in tools or []}
    for i, j, call in calls:
        name, field = call["function"]["name"], f"{key}.{i}.tool_calls.{j}"
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none: the row has no `tools`"
            raise BadInput(f"{where}: {field}.function.name: '{name}' is not a declared function (declared: {known})")
        schema = declared[name]["parameters"]
        error = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(schema)(schema).iter_errors(call["function"]["arguments"]))
        if error is not None:
            path = "".join(f".{p}" for p in error.absolute_path)
            raise BadInput(f"{where}: {field}.function.arguments{path}: {error.message} (function '{name}')")


def check_renders_tools(path, rows, render, fix: str) -> None:
    """`render(messages, tools) -> text` must differ with and without `tools` on the first row (workbench.data.formats
    Row) that declares them: a template that drops them would train and prompt a model that never sees its
    functions. `fix` says what to change."""
    row = next((r for r in rows if r.tools), None)
    if row is not None and not renders_tools(render, row.messages + (row.chosen or row.completion), row.tools):
        raise BadInput(f"{path}:{row.line}: tools: the chat template renders the same text without them ({fix})")


def renders_tools(render, messages: list[dict], tools: list[dict]) -> bool:
    """Whether `render(messages, tools) -> text` writes the tools: its text differs with and without them."""
    return render(messages, tools) != render(messages, None)


def tokenizer_render(tokenizer):
    """render(messages, tools) -> text through a transformers tokenizer's chat template."""
    return lambda messages, tools: tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)

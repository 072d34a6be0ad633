"""A model's text as tool calls, by the chat format's tool-call syntax.

The syntaxes (`SYNTAXES`), as templates and models write them:

- `hermes` (Hermes 2/3, Qwen 2.5/3): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call;
- `llama3` (Llama 3.1-3.3): a JSON object `{"name": ..., "parameters": {...}}`, or after `<|python_tag|>`;
- `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`, or the newer `[TOOL_CALLS]NAME[ARGS]{...}`;
- `harmony` (gpt-oss): `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>`;
- `json`: a plain JSON object, or a list of objects, each with `name` and `arguments` (or `parameters`).

Whatever the syntax, text without its markers is read by the plain-JSON fallback. A text is `calls` (it parsed),
`no_call` (no attempt at a call: prose only), or `unparseable` (a marker, or a JSON object naming a function,
that does not read as calls): an unparseable output is counted apart from a parsed call that is wrong.
"""

import json
import re
from dataclasses import dataclass, field

from workbench.toolcalls.calls import ToolCall

SYNTAXES = ("hermes", "llama3", "mistral", "harmony", "json")

_MARKERS = {"harmony": ("to=functions.",), "mistral": ("[TOOL_CALLS]",), "hermes": ("<tool_call>",),
            "llama3": ("<|python_tag|>",)}
_ATTEMPT = re.compile(r'[\[{]\s*\{?\s*"(?:name|function|type)"\s*:')  # where a JSON call would start
_FENCE = re.compile(r"```(?:json|tool_call|python)?\s*(.*?)\s*```", re.DOTALL)
_TURN_ENDS = ("<|eom_id|>", "<|eot_id|>", "</s>", "<|im_end|>", "<|end|>", "<|call|>", "<|return|>")


@dataclass(frozen=True)
class ParsedCalls:
    status: str  # "calls", "no_call" or "unparseable"
    calls: list[ToolCall] = field(default_factory=list)
    text: str = ""  # the free text outside the calls
    error: str = ""  # why it did not parse

    @property
    def parsed(self) -> bool:
        return self.status != "unparseable"


class _Unparseable(ValueError):
    pass


def syntax_of_template(template: str | None) -> str:
    """The tool-call syntax a chat template writes calls in; "" for none wb knows (the text's markers decide)."""
    if not template:
        return ""
    if "to=functions." in template or "<|call|>" in template:
        return "harmony"
    if "[TOOL_CALLS]" in template:
        return "mistral"
    if "<tool_call>" in template:
        return "hermes"
    if "<|python_tag|>" in template or ("ipython" in template and '"parameters"' in template):
        return "llama3"
    return ""


def parse_calls(text: str, syntax: str = "") -> ParsedCalls:
    """`text` (a model's answer, reasoning already stripped) as calls in `syntax` (one of SYNTAXES; "" reads
    whichever syntax's markers the text holds)."""
    if syntax and syntax not in SYNTAXES:
        raise ValueError(f"unknown tool-call syntax {syntax!r} (one of {', '.join(SYNTAXES)})")
    order = [syntax] if syntax in _MARKERS else []
    order += [s for s in _MARKERS if s not in order]
    try:
        for name in order:
            if any(m in text for m in _MARKERS[name]):
                parsed = _READERS[name](text)
                if not parsed.calls and re.search(r"\[\s*\]", text):  # `<tool_call>[]</tool_call>`: none made
                    return ParsedCalls("no_call", text=parsed.text)
                if not parsed.calls:
                    raise _Unparseable(f"{_MARKERS[name][0]} without a call after it")
                return parsed
        return _plain_json(text)
    except _Unparseable as exc:
        return ParsedCalls("unparseable", text=text.strip(), error=str(exc))


def _call(obj, where: str) -> ToolCall:
    """One call object: {"name", "arguments" | "parameters"}, or OpenAI's {"function": {...}}."""
    if not isinstance(obj, dict):
        raise _Unparseable(f"{where}: a call is a JSON object, got {type(obj).__name__}")
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise _Unparseable(f"{where}: a call needs a 'name'")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise _Unparseable(f"{where}: arguments of {name!r} are not JSON: {exc}") from None
    if not isinstance(args, dict):
        raise _Unparseable(f"{where}: arguments of {name!r} are not a JSON object")
    return ToolCall(name, args)


def _json_values(body: str, where: str) -> list:
    """The JSON values `body` holds one after another (separated by whitespace, `;` or `,`), nothing else."""
    decoder, values, i = json.JSONDecoder(), [], 0
    body = body.strip()
    while i < len(body):
        try:
            value, i = decoder.raw_decode(body, i)
        except json.JSONDecodeError as exc:
            raise _Unparseable(f"{where}: not JSON: {exc}") from None
        values.append(value)
        while i < len(body) and body[i] in " \t\r\n;,":
            i += 1
    return values


def _calls_of(values: list, where: str) -> list[ToolCall]:
    calls = []
    for value in values:
        calls += [_call(v, where) for v in value] if isinstance(value, list) else [_call(value, where)]
    return calls


def _strip_end(body: str) -> str:
    for end in _TURN_ENDS:
        body = body.split(end, 1)[0]
    return body


def _hermes(text: str) -> ParsedCalls:
    blocks = re.findall(r"<tool_call>(.*?)(?:</tool_call>|$)", text, re.DOTALL)
    calls = _calls_of([v for b in blocks for v in _json_values(_strip_end(b), "<tool_call>")], "<tool_call>")
    free = re.sub(r"<tool_call>.*?(?:</tool_call>|$)", "", text, flags=re.DOTALL)
    return ParsedCalls("calls", calls, _strip_end(free).strip())


def _llama3(text: str) -> ParsedCalls:
    free, _, body = text.partition("<|python_tag|>")
    calls = _calls_of(_json_values(_strip_end(body), "<|python_tag|>"), "<|python_tag|>")
    return ParsedCalls("calls", calls, free.strip())


def _mistral(text: str) -> ParsedCalls:
    free, *segments = text.split("[TOOL_CALLS]")
    calls = []
    for segment in segments:
        segment = _strip_end(segment).strip()
        named = re.match(r"([\w.\-]+)(?:\[CALL_ID\][\w\-]*)?\[ARGS\]", segment)
        if named:
            args = _json_values(segment[named.end():], f"[TOOL_CALLS]{named.group(1)}[ARGS]")
            if len(args) != 1:
                raise _Unparseable(f"[TOOL_CALLS]{named.group(1)}[ARGS]: expected one JSON object")
            calls.append(_call({"name": named.group(1), "arguments": args[0]}, "[TOOL_CALLS]"))
        else:
            calls += _calls_of(_json_values(segment, "[TOOL_CALLS]"), "[TOOL_CALLS]")
    return ParsedCalls("calls", calls, free.strip())


def _harmony(text: str) -> ParsedCalls:
    calls = []
    for found in re.finditer(r"to=functions\.([^\s<]+)", text):
        message = text.find("<|message|>", found.end())
        if message < 0:
            raise _Unparseable(f"to=functions.{found.group(1)}: no <|message|>")
        body = re.split(r"<\|(?:call|end|start|return)\|>", text[message + len("<|message|>"):], maxsplit=1)[0]
        args = _json_values(body, f"to=functions.{found.group(1)}")
        if len(args) != 1:
            raise _Unparseable(f"to=functions.{found.group(1)}: expected one JSON object")
        calls.append(_call({"name": found.group(1), "arguments": args[0]}, "to=functions"))
    final = re.search(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|(?:end|return)\|>|$)", text, re.DOTALL)
    return ParsedCalls("calls", calls, final.group(1).strip() if final else "")


def _plain_json(text: str) -> ParsedCalls:
    """The fallback: the text (or a fenced block in it) is a call object or a list of them; prose around a JSON
    call is the free text. No object naming a function anywhere: no call."""
    stripped = text.strip()
    fenced = _FENCE.search(stripped)
    body = fenced.group(1) if fenced else stripped
    if body in ("[]", "[{}]", "{}"):
        return ParsedCalls("no_call", text=stripped)
    start = _ATTEMPT.search(body)
    if start is None:
        return ParsedCalls("no_call", text=stripped)
    try:
        value, end = json.JSONDecoder().raw_decode(body, start.start())
    except json.JSONDecodeError as exc:
        raise _Unparseable(f"a JSON call that does not parse: {exc}") from None
    free = (stripped.replace(fenced.group(0), "") if fenced else body[:start.start()] + body[end:]).strip()
    return ParsedCalls("calls", _calls_of([value], "JSON"), free)


_READERS = {"hermes": _hermes, "llama3": _llama3, "mistral": _mistral, "harmony": _harmony}

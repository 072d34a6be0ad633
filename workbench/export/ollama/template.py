"""Derive an Ollama TEMPLATE (Go text/template) from a Jinja chat template by rendering it.

The Jinja template is rendered on probe conversations whose contents are sentinels. Each message's content
is found in the text; what comes before it is that message's opener, read as a function of a few things a
Go template can know while it walks .Messages: the previous message's role, its own role, whether it is the
last message, whether the conversation has a system message and whether it is the last user message. The text
after the last user message is the tail (the end of that turn plus the generation prompt). That covers, without
per-family code:

- one prefix and suffix per role (ChatML, Llama 3, Phi-3's <|end|>, Zephyr, ...), renamed roles (Gemma's
  `model`), a default system prompt injected when none is given (Qwen 2.5, SmolLM);
- the system text folded into the first user turn (Gemma: the system message opens the user turn, the user
  message continues it) or moved into the last user turn (Mistral's [INST]): `{{ $.System }}` is emitted there;
- a template printing today's date as YYYY-MM-DD (gpt-oss, Mistral Small): Ollama's `{{ currentDate }}`;
- tools (derive_tools): probe tools and calls whose JSON the template printed are found by parsing the text; the
  tool list becomes a range over .Tools with Ollama's `json`, each call its .Function.Name and `json` of its
  .Function.Arguments after a literal prefix (where Ollama's parser finds calls), tool results their own turn;
  tool-call ids where Ollama passes them (a call's .ID, a tool result's .ToolCallID), after the content too; an
  assistant's reasoning and text beside its calls where the template writes them, before the calls.

Whatever else a template does must still come out the same: the caller's round trip renders sample
conversations both ways and compares. A template this cannot express raises TemplateNotExpressible naming
the construct.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations, product

from workbench.errors import BadInput

SYSTEM = object()  # a piece of an opener besides literal text: $.System
# Today's date as templates print it (strftime_now); each becomes slices of Ollama's currentDate (YYYY-MM-DD).
DATE_FORMATS = ("%Y-%m-%d", "%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_SENT = {"system": "WBQSYSTEMQ", "user": "WBQUSER{}Q", "assistant": "WBQASSISTANT{}Q"}
_PROBE_ROLES = [["user"], ["user", "assistant", "user"], ["user", "assistant", "user", "assistant", "user"]]
FEATURES = ("prev", "role", "last", "system", "last_user")


class TemplateNotExpressible(BadInput):
    pass


@dataclass
class DerivedTemplate:
    text: str  # the Go template
    features: tuple[str, ...]  # what the openers depend on (with tools: `tool_features`)
    system_role: bool  # False: the Jinja template refuses system messages; the Go template drops them
    trims_content: bool  # the Jinja template strips whitespace around each content; Ollama does not
    default_system: str | None = None
    notes: list[str] = field(default_factory=list)
    thinking_switch: bool = False  # the generation prompt follows Ollama's think flag (enable_thinking)
    tools: bool = False  # the Go template writes .Tools, .ToolCalls and tool results as the Jinja one does
    tools_refused: str | None = None  # why not, where the Jinja template writes tools
    tool_call_prefix: str | None = None  # the literal text before the calls, where Ollama's parser finds them
    parallel_calls: bool = False  # the Jinja template writes several calls in one message
    # An assistant's text beside its calls: "written" (as the Jinja template writes it), "dropped" (the Jinja
    # template does not write it either), "not written" (the Jinja template writes it where Ollama's cannot)
    call_text: str | None = None
    call_thinking: str | None = None  # its reasoning (.Thinking): the same, "written (always | after last user)"


def _probe(roles: list[str], system: bool) -> list[dict]:
    counts: dict[str, int] = {}
    msgs = [{"role": "system", "content": _SENT["system"]}] if system else []
    for role in roles:
        counts[role] = counts.get(role, 0) + 1
        msgs.append({"role": role, "content": _SENT[role].format(counts[role])})
    return msgs


# What a renderer passes for llama.cpp's `datetime` variable (firefunction-v2 reads it): the date and time of day,
# which Ollama's currentDate cannot give; a rendering that shows it is refused by name.
DATETIME = "WBQDATETIMEQ"


def _render(render, messages: list[dict], what: str) -> str:
    try:
        text = render(messages, True)
    except Exception as exc:  # noqa: BLE001 - raise_exception() in the template, jinja errors, ...
        raise TemplateNotExpressible(f"the chat template fails on {what} ({exc})") from None
    if DATETIME in text:
        raise TemplateNotExpressible("the chat template prints llama.cpp's `datetime` (date and time of day); "
                                     "Ollama's currentDate gives the date only")
    return text


@dataclass(frozen=True)
class Date:
    format: str  # a DATE_FORMATS entry


@dataclass(frozen=True)
class Json:
    """A JSON value the template printed where Ollama's `json` prints it (compact): a tool of .Tools (`tool`),
    its function (`function`), a call's arguments (`args`); `index`: which probe tool or call."""
    kind: str
    index: int


@dataclass(frozen=True)
class Name:
    index: int  # a probe function's name outside JSON: a call's .Function.Name; -1: a tool result's .ToolName


@dataclass(frozen=True)
class CallId:
    """A tool-call id the template printed: `call` (a probe call's id, `index` the call) or `result` (the id a probe
    tool result answers, `index` the result). Once placed (index < 0): a call's .ID, the .ToolCallID of the tool
    result being written (-1) or of the tool result just before (-2: written after that result's content)."""
    kind: str
    index: int


CALL_ID, RESULT_ID, PREV_RESULT_ID = CallId("call", -1), CallId("result", -1), CallId("result", -2)


@dataclass(frozen=True)
class ToolList:
    kind: str  # "tool" or "function": what each element is printed as
    sep: tuple  # the literal pieces between two tools


_NAME = "WBQNAME{}Q"
_MARK = re.compile(r"WBQJ(tool|function|args)(\d)Q|WBQNAME(\d)Q|wbq(call|resu)0(\d)")


def _pieces(text: str, now: datetime) -> tuple:
    """Literal text, with today's date in any of DATE_FORMATS as a Date piece."""
    out: list = [text]
    for fmt in DATE_FORMATS:
        stamp = now.strftime(fmt)
        split: list = []
        for piece in out:
            if not isinstance(piece, str):
                split.append(piece)
                continue
            for n, part in enumerate(piece.split(stamp)):
                if n:
                    split.append(Date(fmt))
                split.append(part)
        out = split
    marked: list = []
    for piece in out:
        if not isinstance(piece, str):
            marked.append(piece)
            continue
        at = 0
        for m in _MARK.finditer(piece):
            marked += [piece[at:m.start()], Json(m[1], int(m[2])) if m[1] else Name(int(m[3])) if m[3] else
                       CallId("call" if m[4] == "call" else "result", int(m[5]))]
            at = m.end()
        marked.append(piece[at:])
    return tuple(p for p in marked if p != "")


def _kind(m: dict) -> str:
    """A message's role, `calls` for an assistant message calling tools (its own openers and tool-call part)."""
    return "calls" if m.get("tool_calls") else m["role"]


def _observations(render, messages: list[dict], now: datetime, displaced: bool = False):
    """[(features, opener pieces)] for each message that emits its content, and the tail after the last one.
    `displaced`: the system message emits nothing and its text goes into the turn it precedes. With tools, the
    pieces after an assistant's content up to its last call's arguments are that message's tool-call part
    (features["calls"]); an assistant whose calls replace its content starts its calls where its opener ends."""
    text = _render(render, messages, "a conversation with roles " + "/".join(_kind(m) for m in messages))
    where, dropped = {}, set()  # by message index: where its content (or its first call's name) starts
    for i, m in enumerate(messages):
        count = text.count(m["content"])
        if count == 0 and m["role"] == "system":  # a template that ignores system messages: so does the Go one
            continue
        if m.get("tool_calls") and not m["content"]:  # calls without text (as chat clients send them)
            dropped.add(i)
            start = max([at + (1 if x in dropped else len(messages[x]["content"])) for x, at in where.items()
                         if messages[x]["role"] != "system"] or [0])
            if _NAME.format(0) not in text[start:]:
                raise TemplateNotExpressible("the chat template does not write an assistant's tool calls by name")
            where[i] = text.index(_NAME.format(0), start)
            continue
        if count != 1:
            raise TemplateNotExpressible(
                f"the chat template renders a {m['role']} message's content {count} times; an Ollama template "
                "emits each message's content once")
        where[i] = text.index(m["content"])
    positions = [where[i] for i, m in enumerate(messages) if m["role"] != "system"]
    if positions != sorted(positions):
        raise TemplateNotExpressible("the chat template reorders the conversation's messages")
    system_at = next((i for i, m in enumerate(messages) if m["role"] == "system"), None)
    system = messages[system_at] if system_at is not None else None
    ignored = system is not None and system_at not in where
    displaced = system is not None and (ignored or displaced or where[system_at] > positions[0])
    observed, pos, prev, calls = [], 0, "", None
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    results = [sum(x["role"] == "tool" for x in messages[:i]) for i in range(len(messages) + 1)]
    for i, m in enumerate(messages):
        feats = {"prev": prev, "role": _kind(m), "last": i == len(messages) - 1, "system": system is not None,
                 "last_user": i == last_user}
        prev = _kind(m)
        if m is system and displaced:
            continue
        at = where[i]
        if displaced and not ignored and pos <= where[system_at] < at:
            s_at = where[system_at]
            pieces = _pieces(text[pos:s_at], now) + (SYSTEM,) + _pieces(text[s_at + len(system["content"]):at], now)
        else:
            pieces = _pieces(text[pos:at], now)
        pieces = _place_result_ids(pieces, results[i] if m["role"] == "tool" else None,
                                   results[i] - 1 if i and messages[i - 1]["role"] == "tool" else None)
        if calls is not None:
            calls["calls"], pieces = _split_calls(pieces)
        if i in dropped:
            feats["dropped"] = True
        observed.append((feats, pieces))
        calls = feats if m.get("tool_calls") else None
        pos = at + (0 if i in dropped else len(m["content"]))
    if displaced and not ignored and not any(SYSTEM in p for _, p in observed):
        raise TemplateNotExpressible("the chat template puts the system message after the last user message")
    tail = _place_result_ids(_pieces(text[pos:], now), None,
                             results[-1] - 1 if messages[-1]["role"] == "tool" else None)
    if calls is not None:
        calls["calls"], tail = _split_calls(tail)
    return observed, ((system is not None, _kind(messages[-1])), tail)


def _place_result_ids(pieces: tuple, own: int | None, before: int | None) -> tuple:
    """The probe result ids in a message's opener (or the tail) as the .ToolCallID of the result being written
    (`own`: its index) or of the one just before it (`before`); any other stays, and is refused."""
    return tuple(RESULT_ID if own is not None and p == CallId("result", own) else
                 PREV_RESULT_ID if before is not None and p == CallId("result", before) else p for p in pieces)


def _split_calls(pieces: tuple) -> tuple[tuple, tuple]:
    """(the tool-call part: up to the last call's arguments, or its id where the template writes it after them
    (Mistral Nemo), the rest)."""
    ends = [n for n, p in enumerate(pieces) if isinstance(p, Json) and p.kind == "args"]
    if not ends:
        raise TemplateNotExpressible("the chat template writes tool-call arguments in a syntax of its own (not JSON); "
                                     "Ollama writes .Function.Arguments as JSON")
    end = ends[-1] + 1
    ids = [n for n, p in enumerate(pieces[end:], end) if isinstance(p, CallId) and p.kind == "call"]
    if ids and all(isinstance(p, str) for p in pieces[end:ids[0]]):
        end = ids[0] + 1
    return pieces[:end], pieces[end:]


def _smallest_table(observed) -> tuple[dict | None, tuple[str, ...]]:
    """The openers keyed by the fewest features that tell them apart: the previous role and its own, then the
    others in FEATURES order (fewer features also cover the combinations no probe shows)."""
    for n in range(len(FEATURES) - 1):
        for extra in combinations(FEATURES[2:], n):
            table = _table(observed, FEATURES[:2] + extra)
            if table is not None:
                return table, FEATURES[:2] + extra
    return None, FEATURES


def _table(observed, features: tuple[str, ...]):
    table: dict[tuple, tuple] = {}
    for feats, pieces in observed:
        key = tuple(feats[f] for f in features)
        if table.setdefault(key, pieces) != pieces:
            return None
    return table


def derive(render, *, now: datetime | None = None, render_off=None, render_tools=None) -> DerivedTemplate:
    """The Go template for the Jinja template behind `render(messages, add_generation_prompt) -> str`.
    `render_off`: the same with reasoning switched off (enable_thinking=False); where that changes only the
    generation prompt, the Go template writes that one when the request sets Ollama's think flag false.
    `render_tools(messages, add_generation_prompt, tools)`: where the template writes tools, the Go template
    writes .Tools, .ToolCalls and tool results alike, or `tools_refused` names why it cannot."""
    now = now or datetime.now()
    system_role = True
    try:
        render(_probe(["user"], True), True)
    except Exception:  # noqa: BLE001 - a template that raises on a system message (Gemma 2)
        system_role = False
    probes = [_probe(roles, system) for roles, system in product(_PROBE_ROLES, (False, True) if system_role else (False,))]
    # A system text that any conversation renders inside a later turn (Mistral: the last user turn) is that
    # turn's, in every conversation.
    displaced = any(SYSTEM in pieces for p in probes for _, pieces in _observations(render, p, now)[0])
    observed, tails = [], {}
    for probe in probes:
        obs, (has_system, tail) = _observations(render, probe, now, displaced)
        observed += obs
        if tails.setdefault(has_system, tail) != tail:
            raise TemplateNotExpressible("the chat template ends the last user turn differently depending on "
                                         "the number of turns")
    table, features = _smallest_table(observed)
    if table is None:
        raise TemplateNotExpressible("a message's opening text depends on more than the previous role, its own "
                                     "role, being last, being the last user message and the presence of a system "
                                     "message (per-position logic)")
    padded = render([{"role": "user", "content": "  " + _SENT["user"].format(1) + "  "}], True)
    trims = ("  " + _SENT["user"].format(1) + "  ") not in padded
    default_system = _default_system(table, features, system_role)
    off_tails, notes = _think_off_tails(render_off, probes, observed, tails, now, displaced)
    support = tool_support(render_tools, system_role, now) if render_tools else ToolSupport(False)
    parts = support.parts
    prefix = "".join(parts.first).replace("\r\n", "\n").split("{")[0].strip() or "{" if parts else None
    return DerivedTemplate(_go_template(table, features, tails, off_tails, parts), features, system_role, trims,
                           default_system, notes, thinking_switch=off_tails is not None, tools=parts is not None,
                           tools_refused=support.reason, tool_call_prefix=prefix,
                           parallel_calls=bool(parts and parts.parallel),
                           call_text=_written(parts, "content"), call_thinking=_written(parts, "thinking"))


def _written(parts: "ToolParts | None", what: str) -> str | None:
    """DerivedTemplate.call_text / call_thinking from ToolParts.content / thinking."""
    if parts is None:
        return None
    value = getattr(parts, what)
    if value is None:
        return "not written"
    if not value:
        return "dropped"
    return "written" if what == "content" else f"written ({value[0].replace('_', ' ')})"


def _think_off_tails(render_off, probes, observed, tails, now, displaced):
    """The tails with reasoning off, when switching it off changes the tails and nothing else; with a note."""
    if render_off is None:
        return None, []
    off_observed, off_tails = [], {}
    try:
        for probe in probes:
            obs, (has_system, tail) = _observations(render_off, probe, now, displaced)
            off_observed += obs
            off_tails.setdefault(has_system, tail)
    except TemplateNotExpressible:
        return None, ["the chat template fails with enable_thinking=False: Ollama's think flag is not passed on"]
    if off_tails == tails:
        return None, []
    if off_observed != observed:
        return None, [("the chat template's enable_thinking changes more than the generation prompt; Ollama's think "
                      "flag is not passed on")]
    return off_tails, [("reasoning: the request's think=false (Ollama's .IsThinkSet and .Think) gets the generation "
                       "prompt enable_thinking=False gives")]


def _default_system(table, features, system_role) -> str | None:
    """The system block a template injects when the conversation has none, when it reads as one."""
    if not system_role:
        return None
    key = lambda **f: tuple(f[x] for x in features)
    without = table.get(key(prev="", role="user", last=True, system=False, last_user=True))
    sys_open = table.get(key(prev="", role="system", last=False, system=True, last_user=False))
    user_open = table.get(key(prev="system", role="user", last=True, system=True, last_user=True))
    if not (without and sys_open and user_open) or any(not isinstance(p, str) for p in without + sys_open + user_open):
        return None
    text, head, sep = "".join(without), "".join(sys_open), "".join(user_open)
    if text.startswith(head) and text.endswith(sep) and len(text) > len(head) + len(sep):
        return text[len(head): len(text) - len(sep)]
    return None


def _go_date(fmt: str) -> str:
    parts = {"%Y": "{{ slice $today 0 4 }}", "%m": "{{ slice $today 5 7 }}", "%d": "{{ slice $today 8 10 }}",
             "%B": "".join(f'{{{{ {"if" if n == 0 else "else if"} eq (slice $today 5 7) "{n + 1:02d}" }}}}{m}'
                           for n, m in enumerate(_MONTHS)) + "{{ end }}"}
    parts["%b"] = "".join(f'{{{{ {"if" if n == 0 else "else if"} eq (slice $today 5 7) "{n + 1:02d}" }}}}{m[:3]}'
                          for n, m in enumerate(_MONTHS)) + "{{ end }}"
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            out.append(parts[fmt[i:i + 2]])
            i += 2
        else:
            out.append("{{ " + json.dumps(fmt[i]) + " }}")
            i += 1
    return "".join(out)


def _go_literal(pieces) -> str:
    out = []
    for p in pieces:
        if p is SYSTEM:
            out.append("{{ $.System }}")
        elif isinstance(p, ToolList):
            each = "$t" if p.kind == "tool" else "$t.Function"
            out.append(f"{{{{ range $k, $t := $tools }}}}{{{{ if $k }}}}{_go_literal(p.sep)}{{{{ end }}}}"
                       f"{{{{ json {each} }}}}{{{{ end }}}}")
        elif isinstance(p, Name):
            out.append("{{ $m.ToolName }}")
        elif p == CALL_ID:
            out.append("{{ $c.ID }}")
        elif p == RESULT_ID:
            out.append("{{ $m.ToolCallID }}")
        elif p == PREV_RESULT_ID:
            out.append("{{ $prevId }}")
        elif isinstance(p, Date):
            out.append(_go_date(p.format))
        elif p:
            out.append("{{ " + json.dumps(p, ensure_ascii=False) + " }}")
    return "".join(out)


def _condition(feature: str, value) -> str:
    if feature in ("prev", "role"):
        return f'(eq {"$prev" if feature == "prev" else "$kind"} {json.dumps(value)})'
    if feature == "last_user":
        return f'({"eq" if value else "ne"} $i $lastUser)'
    var = "$last" if feature == "last" else "$sys"
    return var if value else f"(not {var})"


def _go_tail(tails: dict) -> str:
    """Tails keyed by (system message?, the last message's kind)."""
    if len(set(tails.values())) == 1:
        return _go_literal(next(iter(tails.values())))
    kinds = sorted({k for _, k in tails})
    out = []
    for n, kind in enumerate(kinds):
        sub = {sys: t for (sys, k), t in tails.items() if k == kind}
        body = _go_literal(next(iter(sub.values()))) if len(set(sub.values())) == 1 else (
            "{{- if $sys }}" + _go_literal(sub[True]) + "{{ else }}" + _go_literal(sub[False]) + "{{ end }}")
        out.append(body if len(kinds) == 1 else
                   f'{{{{- {"if" if n == 0 else "else if"} eq $prev {json.dumps(kind)} }}}}' + body)
    return "".join(out) + ("{{ end }}" if len(kinds) > 1 else "")


def _chain(table: dict, features: tuple[str, ...], tools: "ToolParts | None" = None) -> list[str]:
    lines = []
    for n, (key, pieces) in enumerate(table.items()):
        keyword = "if" if n == 0 else "else if"
        cond = " ".join(_condition(f, v) for f, v in zip(features, key))
        role = dict(zip(features, key)).get("role")
        content = "{{ $m.Content }}"
        if tools and role == "calls" and tools.dropped:  # the reasoning and text beside the calls, where written
            before, after = tools.content or ("", "")
            content = f"{{{{ if $m.Content }}}}{_go_literal((before,))}{content}{_go_literal((after,))}{{{{ end }}}}" \
                if tools.content else ""
            if tools.thinking:
                condition, before, after = tools.thinking
                test = "$m.Thinking" if condition == "always" else "and $m.Thinking (gt $i $lastUser)"
                content = (f"{{{{ if {test} }}}}{_go_literal((before,))}{{{{ $m.Thinking }}}}{_go_literal((after,))}"
                           f"{{{{ end }}}}{content}")
        elif tools and role == "tool" and tools.quoted_results:
            content = "{{ json $m.Content }}"
        lines.append(f"{{{{- {keyword} and {cond} }}}}{_go_literal(pieces)}{content}")
    return lines + ["{{- end }}"]


def _go_template(table: dict, features: tuple[str, ...], tails: dict, off_tails: dict | None = None,
                 tools: "ToolParts | None" = None) -> str:
    lines = ['{{- $prev := "" }}{{- $sys := ne $.System "" }}' + ("{{- $tools := .Tools }}" if tools else ""),
             "{{- range $i, $m := .Messages }}",
             "{{- $last := eq (len (slice $.Messages $i)) 1 }}{{- $kind := $m.Role }}"]
    every = [*table.values(), *tails.values(), *(off_tails or {}).values()]
    if tools:
        every += [*tools.table.values(), *tools.tails.values(), tools.first, tools.mid, tools.after, tools.between]
        lines.append('{{- if $m.ToolCalls }}{{- $kind = "calls" }}{{- end }}')
    if any(isinstance(p, Date) for pieces in every for p in pieces):
        lines[0] += "{{- $today := currentDate }}"
    if any(PREV_RESULT_ID in pieces for pieces in every):
        lines[0] += '{{- $prevId := "" }}'
    if "last_user" in features or (tools and ("last_user" in tools.features or
                                               (tools.thinking and tools.thinking[0] == "after_last_user"))):
        lines[0] += ('{{- $lastUser := -1 }}{{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}'
                     "{{- $lastUser = $i }}{{- end }}{{- end }}")
    if tools:
        lines += ["{{- if $tools }}", *_chain(tools.table, tools.features, tools), "{{- else }}"]
    lines += _chain(table, features)
    if tools:
        # The calls start with literal text (a text node, not an action): Ollama's parser takes the tool-call
        # prefix (<tool_call>, [TOOL_CALLS], or "{") from the first text inside {{ if .ToolCalls }}.
        lines += ["{{- end }}", "{{- if .ToolCalls }}" + "".join(tools.first) +
                  "{{ range $j, $c := .ToolCalls }}{{ if $j }}" + _go_literal(tools.between) +
                  "{{ end }}{{ $c.Function.Name }}" + _go_literal(tools.mid) +
                  "{{ json $c.Function.Arguments }}" + _go_literal(tools.after) + "{{ end }}{{ end }}"]
    lines += ["{{- $prev = $kind }}" + ("{{- $prevId = $m.ToolCallID }}" if "$prevId" in lines[0] else ""),
              "{{- end }}"]
    tail = _go_tail(tails)
    if off_tails is not None:
        tail = "{{- if and $.IsThinkSet (not $.Think) }}" + _go_tail(off_tails) + "{{ else }}" + tail + "{{ end }}"
    if tools:
        tail = "{{- if $tools }}" + _go_tail(tools.tails) + "{{ else }}" + tail + "{{ end }}"
    lines.append('{{- if ne $prev "assistant" }}' + tail + "{{ end }}")
    return "\n".join(lines)


# Tools: a probe function and calls to it, with sentinels, to see how the Jinja template writes them.
PROBE_TOOL = {"type": "function", "function": {
    "name": "wbq_lookup", "description": "WBQDESCQ",
    "parameters": {"type": "object", "properties": {"wbq_key": {"type": "string", "description": "WBQKEYDESCQ"}},
                   "required": ["wbq_key"]}}}


@dataclass
class ToolSupport:
    renders_tools: bool  # the Jinja template writes the tools it is given
    reason: str | None = None  # why the Go template cannot write them as the Jinja one does
    parts: "ToolParts | None" = None  # the Go template's tool parts, when it can


def tool_support(render_tools, system_role: bool = True, now: datetime | None = None) -> ToolSupport:
    """Whether the Jinja template behind `render_tools(messages, add_generation_prompt, tools)` renders tools and,
    when it does, their Go template parts (derive_tools) or the construct Ollama's template language cannot
    write, named."""
    user = [{"role": "user", "content": _SENT["user"].format(1)}]
    try:
        plain = render_tools(user, True, [])
        with_tools = render_tools(user, True, [PROBE_TOOL])
    except Exception:  # noqa: BLE001 - a template that fails on tools does not render them
        return ToolSupport(False)
    if with_tools == plain:
        return ToolSupport(False)
    try:
        return ToolSupport(True, parts=derive_tools(render_tools, system_role, now or datetime.now()))
    except TemplateNotExpressible as exc:
        return ToolSupport(True, str(exc))


# Two probe tools and two calls (a parallel call), to see the tool list's separator and the calls' layout.
PROBE_TOOLS = [PROBE_TOOL, {"type": "function", "function": {
    "name": "wbq_other", "description": "WBQDESC2Q",
    "parameters": {"type": "object", "properties": {"wbq_n": {"type": "integer", "description": "WBQNDESCQ"}},
                   "required": ["wbq_n"]}}}]
CALL_ARGS = [{"wbq_key": "WBQVAL1Q"}, {"wbq_key": "WBQVAL2Q", "wbq_n": 2}]
_LEFTOVERS = ("WBQDESC", "WBQKEYDESCQ", "WBQNDESCQ", "WBQVAL", "wbq_key")
# the last: an agent's loop, a call straight after a tool result
_TOOL_ROLES = [["user"], ["user", "assistant", "user"], ["user", "calls", "tool", "tool", "assistant", "user"],
               ["user", "calls", "tool", "tool"], ["user", "calls", "tool"],
               ["user", "calls", "tool", "tool", "calls", "tool", "tool"]]


@dataclass
class ToolParts:
    """The tool parts of a Go template: openers and tails when the request has tools (the tool list is a ToolList
    piece), and an assistant's calls: first + (name mid args after), `between` two calls."""
    table: dict
    features: tuple[str, ...]
    tails: dict
    first: tuple
    mid: tuple
    after: tuple  # after a call's arguments: its id, where the template writes it there
    between: tuple
    dropped: bool  # the calls replace the assistant's content
    parallel: bool  # the Jinja template renders several calls in one message
    quoted_results: bool = False  # tool results written as JSON strings (Ollama's json of .Content)
    # An assistant's text beside its calls: (before, after) it at the end of the message's opener, () where the
    # Jinja template does not write it, None where it writes it elsewhere (then the Go template does not either)
    content: tuple | None = ()
    # Its reasoning (.Thinking) there too, before the text: (condition, before, after), () or None as for content
    thinking: tuple | None = ()


def json_values(text: str, wanted: list) -> list[tuple[int, int, object]]:
    """(start, end, value) of each JSON object in `text` equal (as parsed) to one of `wanted`, left to right."""
    canon = {json.dumps(w, sort_keys=True) for w in wanted}
    decoder, out, i = json.JSONDecoder(), [], 0
    while (j := text.find("{", i)) >= 0:
        try:
            value, end = decoder.raw_decode(text, j)
        except ValueError:
            i = j + 1
            continue
        if json.dumps(value, sort_keys=True) in canon:
            out.append((j, end, value))
            i = end
        else:
            i = j + 1
    return out


def _mark(text: str) -> str:
    """The probe tools, functions and call arguments the template printed as JSON, and the probe functions' names,
    replaced by markers that _pieces reads."""
    marks = {}
    for n, tool in enumerate(PROBE_TOOLS):
        marks[json.dumps(tool, sort_keys=True)] = f"WBQJtool{n}Q"
        marks[json.dumps(tool["function"], sort_keys=True)] = f"WBQJfunction{n}Q"
    marks |= {json.dumps(a, sort_keys=True): f"WBQJargs{n}Q" for n, a in enumerate(CALL_ARGS)}
    out, pos = [], 0
    for start, end, value in json_values(text, [json.loads(k) for k in marks]):
        out += [text[pos:start], marks[json.dumps(value, sort_keys=True)]]
        pos = end
    text = "".join(out) + text[pos:]
    for n, tool in enumerate(PROBE_TOOLS):
        text = text.replace(tool["function"]["name"], _NAME.format(n))
    return text


def _tool_probe(roles: list[str], system: bool, n_calls: int) -> list[dict]:
    msgs = [{"role": "system", "content": _SENT["system"]}] if system else []
    results = 0
    for n, role in enumerate(roles):
        if role == "calls":
            msgs.append({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "id": f"wbqcall0{k}",
                 "function": {"name": PROBE_TOOLS[k]["function"]["name"], "arguments": CALL_ARGS[k]}}
                for k in range(n_calls)]})
        elif role == "tool":
            msgs.append({"role": "tool", "name": PROBE_TOOLS[results % n_calls]["function"]["name"],
                         "tool_call_id": f"wbqresu0{results}", "content": f"WBQTOOL{n}Q"})
            results += 1
        else:
            msgs.append({"role": role, "content": _SENT[role].format(n)})
    return msgs


def _collapse_tools(pieces: tuple) -> tuple:
    """The run tool 0, separator, tool 1 as one ToolList piece."""
    at = [n for n, p in enumerate(pieces) if isinstance(p, Json) and p.kind in ("tool", "function")]
    if not at:
        return pieces
    first, second = (pieces[n] for n in at[:2]) if len(at) == 2 else (None, None)
    if len(at) != 2 or (first.index, second.index) != (0, 1) or first.kind != second.kind:
        raise TemplateNotExpressible("the chat template writes the tool list otherwise than one JSON value per tool "
                                     "in order; Ollama's template can range over .Tools only")
    sep = pieces[at[0] + 1:at[1]]
    return pieces[:at[0]] + (ToolList(first.kind, sep),) + pieces[at[1] + 1:]


def _check_pieces(pieces: tuple, where: str) -> None:
    for p in pieces:
        if isinstance(p, Json):
            raise TemplateNotExpressible(f"the chat template writes tool JSON ({p.kind}) in {where}")
        if isinstance(p, Name) and p.index >= 0:
            raise TemplateNotExpressible(f"the chat template writes a function's name outside its JSON in {where}")
        if isinstance(p, CallId) and p not in (RESULT_ID, PREV_RESULT_ID):
            raise TemplateNotExpressible(
                "the chat template writes a tool call's id apart from the call" if p.kind == "call" else
                "the chat template writes a tool result's id away from that result")
        if isinstance(p, str) and any(x in p for x in _LEFTOVERS):
            raise TemplateNotExpressible("the chat template writes tool definitions or arguments in a syntax of its "
                                         "own (not JSON); Ollama hands a template the tools as JSON")


def _call_layout(pieces: tuple, n_calls: int) -> tuple[tuple, tuple, tuple, tuple]:
    """(first, mid, after, between) of a tool-call part: first Name(0) mid Json(args 0) after [between Name(1) mid
    Json(args 1) after]; `after` is empty or ends with the call's id (Mistral Nemo writes it after the arguments)."""
    def find(kind, index):
        want = Name(index) if kind == "name" else Json("args", index)
        if pieces.count(want) != 1:
            raise TemplateNotExpressible("the chat template writes each tool call otherwise than its function's name "
                                         "then its JSON arguments")
        return pieces.index(want)

    def own_id(part, index):  # the call's own id as .ID; any other id stays and is refused below
        return tuple(CALL_ID if p == CallId("call", index) else p for p in part)

    def split_after(part, index):  # (the call's own id and the text before it, the rest)
        own = CallId("call", index)
        return (part[:part.index(own) + 1], part[part.index(own) + 1:]) if own in part else ((), part)

    name0, args0 = find("name", 0), find("args", 0)
    first, mid = pieces[:name0], own_id(pieces[name0 + 1:args0], 0)
    last_args = args0
    after, between = ((), ())
    if n_calls > 1:
        name1, args1 = find("name", 1), find("args", 1)
        after, between = split_after(pieces[args0 + 1:name1], 0)
        after, between = own_id(after, 0), own_id(between, 1)
        if own_id(pieces[name1 + 1:args1], 1) != mid or not name0 < args0 < name1 < args1:
            raise TemplateNotExpressible("the chat template writes parallel tool calls in different layouts")
        last_args = args1
    last = own_id(pieces[last_args + 1:], n_calls - 1)
    if n_calls == 1:
        after = last
    if last != after:
        raise TemplateNotExpressible("the chat template writes the last tool call's end otherwise than the others'")
    if any(isinstance(p, CallId) for p in first):
        raise TemplateNotExpressible("the chat template writes the first tool call's id before its name")
    for part in (first, mid, after, between):
        _check_pieces(tuple(p for p in part if p != CALL_ID), "a tool call")
        if any(not isinstance(p, str) and p != CALL_ID for p in part):
            raise TemplateNotExpressible("the chat template writes more than literal text around a tool call")
    if "{{" in "".join(first):
        raise TemplateNotExpressible("the text before the tool calls contains {{, which Ollama's template reads as an "
                                     "action")
    return first, mid, after, between


def derive_tools(render_tools, system_role: bool, now: datetime) -> ToolParts:
    """The tool parts of the Go template for the Jinja template behind `render_tools(messages, generation, tools)`,
    or TemplateNotExpressible naming the construct Ollama's template language cannot write."""
    quoted = []  # the template writes a tool result as a JSON string (Llama 3.x: tojson of the content)

    def render(messages, generation):
        text = _mark(render_tools(messages, generation, PROBE_TOOLS))
        results = [m["content"] for m in messages if m["role"] == "tool"]
        if results and all(f'"{r}"' in text for r in results):
            quoted.append(True)
            for r in results:
                text = text.replace(f'"{r}"', r)
        return text

    n_calls = 2
    try:
        render_tools(_tool_probe(_TOOL_ROLES[2], False, 2), True, PROBE_TOOLS)
    except Exception:  # noqa: BLE001 - a template refusing parallel calls (Llama 3.1: "only supports single")
        n_calls = 1
    roles = _TOOL_ROLES if n_calls == 2 else list({  # one call a message: one result after it
        tuple(r for n, r in enumerate(seq) if not (r == "tool" and seq[n - 1] == "tool")): None
        for seq in _TOOL_ROLES})
    probes = [_tool_probe(r, system, n_calls) for r, system in product(roles, (False, True) if system_role else (False,))]
    displaced = any(SYSTEM in pieces for p in probes for _, pieces in _observations(render, p, now)[0])
    observed, tails = [], {}
    for probe in probes:
        obs, (key, tail) = _observations(render, probe, now, displaced)
        observed += obs
        if tails.setdefault(key, _collapse_tools(tail)) != _collapse_tools(tail):
            raise TemplateNotExpressible("the chat template with tools ends the last turn differently depending on "
                                         "the number of turns")
    dropped = any(f.get("dropped") for f, _ in observed)
    fixed = []
    for feats, pieces in observed:
        if feats["role"] == "tool":  # its own name: .ToolName
            pieces = tuple(Name(-1) if isinstance(p, Name) else p for p in pieces)
        if feats.get("dropped"):  # the opener is the plain assistant's; the rest starts the calls
            plain = next((p for f, p in observed if f["role"] == "assistant" and
                          all(f[k] == feats[k] for k in ("prev", "last", "system"))), None)
            cut = len(plain) - 1 if plain else -1
            if not plain or pieces[:cut] != plain[:cut] or not isinstance(plain[-1], str) or \
                    not isinstance(pieces[cut], str) or not pieces[cut].startswith(plain[-1]):
                raise TemplateNotExpressible("the chat template opens an assistant message with tool calls otherwise "
                                             "than one without")
            feats["calls"] = (pieces[cut][len(plain[-1]):],) + pieces[cut + 1:] + feats["calls"]
            pieces = plain
        fixed.append((feats, _collapse_tools(pieces)))
    layouts = {_call_layout(f["calls"], n_calls) for f, _ in fixed if "calls" in f}
    if len(layouts) != 1:
        raise TemplateNotExpressible("the chat template writes tool calls differently in different turns")
    for _, pieces in fixed:
        _check_pieces(pieces, "a message's opening")
    for tail in tails.values():
        _check_pieces(tail, "the end of the prompt")
    table, features = _smallest_table(fixed)
    if table is None:
        raise TemplateNotExpressible("with tools, a message's opening text depends on more than the previous role, "
                                     "its own role, being last, being the last user message and the presence of a "
                                     "system message")
    first, mid, after, between = layouts.pop()
    calls = [p for p in probes if sum(bool(m.get("tool_calls")) for m in p) == 1]
    content = thinking = None
    if dropped:
        text = _beside_calls(render, calls, "".join(first), "content")
        content = text.pop() if text is not None and len(set(text)) == 1 else None
        thinking = _thinking_beside_calls(calls, _beside_calls(render, calls, "".join(first), "reasoning_content"))
        if content and thinking and not _together(render, calls, "".join(first), content, thinking):
            thinking = None
    return ToolParts(table, features, tails, first, mid, after, between, dropped, n_calls > 1, bool(quoted), content,
                     thinking)


_BESIDE = {"content": "WBQCALLTEXTQ", "reasoning_content": "WBQTHINKQ"}


def _beside_calls(render, probes: list[list[dict]], first: str, field: str) -> list[tuple] | None:
    """Per probe, what the Jinja template writes of `field` (an assistant's text beside its calls, or its reasoning)
    when the probe's calls carry it: () nothing; (before, after) where the rendering is the one without it plus
    `before VALUE after` just before the calls' first text (Qwen 3: the text and a newline before `<tool_call>`).
    None where any rendering writes it otherwise, or fails."""
    sentinel, seen = _BESIDE[field], []
    for bare in probes:
        try:
            without = render(bare, True)
            with_it = render([m | {field: sentinel} if m.get("tool_calls") else m for m in bare], True)
        except Exception:  # noqa: BLE001 - a template refusing it
            return None
        if with_it == without:
            seen.append(())
            continue
        at = _first_name(without)
        start, grown = at - len(first), len(with_it) - len(without)
        if at < 0 or without[start:at] != first or with_it[:start] != without[:start] or \
                with_it[start + grown:] != without[start:] or with_it[start:start + grown].count(sentinel) != 1:
            return None
        before, after = with_it[start:start + grown].split(sentinel)
        if any(x in before + after for x in ("WBQ", "wbq")):
            return None
        seen.append((before, after))
    return seen


def _first_name(text: str) -> int:
    """Where a probe's (only) calls message writes its first call's name: after the first user message."""
    return text.find(_NAME.format(0), text.find(_SENT["user"].format(0)))


def _thinking_beside_calls(probes: list[list[dict]], seen: list[tuple] | None) -> tuple | None:
    """ToolParts.thinking from _beside_calls: (condition, before, after) where the reasoning is written in every
    probe ("always") or exactly where the calls follow the last user message ("after_last_user": Qwen 3 keeps the
    reasoning of the turn in progress only); () where it is never written; None otherwise."""
    if seen is None:
        return None
    forms = {s for s in seen if s}
    if not forms:
        return ()
    if len(forms) != 1:
        return None
    written = [bool(s) for s in seen]
    condition = "always" if all(written) else \
        "after_last_user" if written == [_after_last_user(p) for p in probes] else None
    return (condition, *forms.pop()) if condition else None


def _after_last_user(probe: list[dict]) -> bool:
    return max(i for i, m in enumerate(probe) if m.get("tool_calls")) > \
        max(i for i, m in enumerate(probe) if m["role"] == "user")


def _together(render, probes: list[list[dict]], first: str, content: tuple, thinking: tuple) -> bool:
    """Whether reasoning and text beside the same calls render as the Go template writes them: the reasoning, then
    the text, each with its own literals."""
    values = {"content": _BESIDE["content"], "reasoning_content": _BESIDE["reasoning_content"]}
    for bare in probes:
        without = render(bare, True)
        both = render([m | values if m.get("tool_calls") else m for m in bare], True)
        start = _first_name(without) - len(first)
        reasoning = thinking[1] + values["reasoning_content"] + thinking[2] \
            if thinking[0] == "always" or _after_last_user(bare) else ""
        if both != without[:start] + reasoning + content[0] + values["content"] + content[1] + without[start:]:
            return False
    return True

"""Derive an Ollama TEMPLATE (Go text/template) from a Jinja chat template by rendering it.

The Jinja template is rendered on probe conversations whose contents are sentinels. Each message's content
is found in the text; what comes before it is that message's opener, read as a function of a few things a
Go template can know while it walks .Messages: the previous message's role, its own role, whether it is the
last message and whether the conversation has a system message. The text after the last user message is the
tail (the end of that turn plus the generation prompt). That covers, without per-family code:

- one prefix and suffix per role (ChatML, Llama 3, Phi-3's <|end|>, Zephyr, ...), renamed roles (Gemma's
  `model`), a default system prompt injected when none is given (Qwen 2.5, SmolLM);
- the system text folded into the first user turn (Gemma: the system message opens the user turn, the user
  message continues it) or moved into the last user turn (Mistral's [INST]): `{{ $.System }}` is emitted there;
- a template printing today's date as YYYY-MM-DD (gpt-oss, Mistral Small): Ollama's `{{ currentDate }}`.

Whatever else a template does must still come out the same: the caller's round trip renders sample
conversations both ways and compares. A template this cannot express raises TemplateNotExpressible naming
the construct.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from itertools import product

from workbench.errors import BadInput

SYSTEM = object()  # a piece of an opener besides literal text: $.System
# Today's date as templates print it (strftime_now); each becomes slices of Ollama's currentDate (YYYY-MM-DD).
DATE_FORMATS = ("%Y-%m-%d", "%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_SENT = {"system": "WBQSYSTEMQ", "user": "WBQUSER{}Q", "assistant": "WBQASSISTANT{}Q"}
_PROBE_ROLES = [["user"], ["user", "assistant", "user"], ["user", "assistant", "user", "assistant", "user"]]
FEATURES = ("prev", "role", "last", "system")


class TemplateNotExpressible(BadInput):
    pass


@dataclass
class DerivedTemplate:
    text: str  # the Go template
    features: tuple[str, ...]  # what the openers depend on
    system_role: bool  # False: the Jinja template refuses system messages; the Go template drops them
    trims_content: bool  # the Jinja template strips whitespace around each content; Ollama does not
    default_system: str | None = None
    notes: list[str] = field(default_factory=list)
    thinking_switch: bool = False  # the generation prompt follows Ollama's think flag (enable_thinking)


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
    return tuple(p for p in out if p != "")


def _observations(render, messages: list[dict], now: datetime, displaced: bool = False):
    """[(features, opener pieces)] for each message that emits its content, and the tail after the last one.
    `displaced`: the system message emits nothing and its text goes into the turn it precedes."""
    text = _render(render, messages, "a conversation with roles " + "/".join(m["role"] for m in messages))
    where = {}
    for m in messages:
        count = text.count(m["content"])
        if count == 0 and m["role"] == "system":  # a template that ignores system messages: so does the Go one
            continue
        if count != 1:
            raise TemplateNotExpressible(
                f"the chat template renders a {m['role']} message's content {count} times; an Ollama template "
                "emits each message's content once")
        where[m["content"]] = text.index(m["content"])
    turns = [m for m in messages if m["role"] != "system"]
    positions = [where[m["content"]] for m in turns]
    if positions != sorted(positions):
        raise TemplateNotExpressible("the chat template reorders the conversation's messages")
    system = next((m for m in messages if m["role"] == "system"), None)
    ignored = system is not None and system["content"] not in where
    displaced = system is not None and (ignored or displaced or where[system["content"]] > positions[0])
    observed, pos, prev = [], 0, ""
    for i, m in enumerate(messages):
        feats = {"prev": prev, "role": m["role"], "last": i == len(messages) - 1, "system": system is not None}
        prev = m["role"]
        if m is system and displaced:
            continue
        at = where[m["content"]]
        if displaced and not ignored and pos <= where[system["content"]] < at:
            s_at = where[system["content"]]
            pieces = _pieces(text[pos:s_at], now) + (SYSTEM,) + _pieces(text[s_at + len(system["content"]):at], now)
        else:
            pieces = _pieces(text[pos:at], now)
        observed.append((feats, pieces))
        pos = at + len(m["content"])
    if displaced and not ignored and not any(SYSTEM in p for _, p in observed):
        raise TemplateNotExpressible("the chat template puts the system message after the last user message")
    return observed, (system is not None, _pieces(text[pos:], now))


def _table(observed, features: tuple[str, ...]):
    table: dict[tuple, tuple] = {}
    for feats, pieces in observed:
        key = tuple(feats[f] for f in features)
        if table.setdefault(key, pieces) != pieces:
            return None
    return table


def derive(render, *, now: datetime | None = None, render_off=None) -> DerivedTemplate:
    """The Go template for the Jinja template behind `render(messages, add_generation_prompt) -> str`.
    `render_off`: the same with reasoning switched off (enable_thinking=False); where that changes only the
    generation prompt, the Go template writes that one when the request sets Ollama's think flag false."""
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
    for n in range(2, len(FEATURES) + 1):
        features = FEATURES[:n]
        table = _table(observed, features)
        if table is not None:
            break
    else:
        raise TemplateNotExpressible("a message's opening text depends on more than the previous role, its own "
                                     "role, being last and the presence of a system message (per-position logic)")
    padded = render([{"role": "user", "content": "  " + _SENT["user"].format(1) + "  "}], True)
    trims = ("  " + _SENT["user"].format(1) + "  ") not in padded
    default_system = _default_system(table, features, system_role)
    off_tails, notes = _think_off_tails(render_off, probes, observed, tails, now, displaced)
    return DerivedTemplate(_go_template(table, features, tails, off_tails), features, system_role, trims,
                           default_system, notes, thinking_switch=off_tails is not None)


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
    without = table.get(key(prev="", role="user", last=True, system=False))
    sys_open = table.get(key(prev="", role="system", last=False, system=True))
    user_open = table.get(key(prev="system", role="user", last=True, system=True))
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
        elif isinstance(p, Date):
            out.append(_go_date(p.format))
        elif p:
            out.append("{{ " + json.dumps(p, ensure_ascii=False) + " }}")
    return "".join(out)


def _condition(feature: str, value) -> str:
    if feature in ("prev", "role"):
        return f'(eq {"$prev" if feature == "prev" else "$m.Role"} {json.dumps(value)})'
    var = "$last" if feature == "last" else "$sys"
    return var if value else f"(not {var})"


def _go_tail(tails: dict) -> str:
    if len(set(tails.values())) == 1:
        return _go_literal(next(iter(tails.values())))
    return "{{- if $sys }}" + _go_literal(tails[True]) + "{{ else }}" + _go_literal(tails[False]) + "{{ end }}"


def _go_template(table: dict, features: tuple[str, ...], tails: dict, off_tails: dict | None = None) -> str:
    lines = ['{{- $prev := "" }}{{- $sys := ne $.System "" }}', "{{- range $i, $m := .Messages }}",
             "{{- $last := eq (len (slice $.Messages $i)) 1 }}"]
    if any(isinstance(p, Date) for pieces in [*table.values(), *tails.values(), *(off_tails or {}).values()]
           for p in pieces):
        lines[0] += "{{- $today := currentDate }}"
    for n, (key, pieces) in enumerate(table.items()):
        keyword = "if" if n == 0 else "else if"
        cond = " ".join(_condition(f, v) for f, v in zip(features, key))
        lines.append(f"{{{{- {keyword} and {cond} }}}}{_go_literal(pieces)}{{{{ $m.Content }}}}")
    lines += ["{{- end }}", "{{- $prev = $m.Role }}", "{{- end }}"]
    tail = _go_tail(tails)
    if off_tails is not None:
        tail = "{{- if and $.IsThinkSet (not $.Think) }}" + _go_tail(off_tails) + "{{ else }}" + tail + "{{ end }}"
    lines.append('{{- if ne $prev "assistant" }}' + tail + "{{ end }}")
    return "\n".join(lines)


# Tools: a probe function and calls to it, with sentinels, to see how the Jinja template writes them.
PROBE_TOOL = {"type": "function", "function": {
    "name": "wbq_lookup", "description": "WBQDESCQ",
    "parameters": {"type": "object", "properties": {"wbq_key": {"type": "string", "description": "WBQKEYDESCQ"}},
                   "required": ["wbq_key"]}}}
PROBE_ARGS = {"wbq_key": "WBQVALQ", "wbq_n": 2}


@dataclass
class ToolSupport:
    renders_tools: bool  # the Jinja template writes the tools it is given
    reason: str | None = None  # why the Go template cannot write them as the Jinja one does


def tool_support(render_tools) -> ToolSupport:
    """Whether the Jinja template behind `render_tools(messages, add_generation_prompt, tools)` renders tools,
    and, when it does, the construct Ollama's template language cannot reproduce. Ollama hands a template the
    tools and each call's arguments as typed values that print, and that its `json` function writes, only as
    compact JSON; a template writing them with tojson's ", " / ": " separators or in a syntax of its own cannot
    be matched text for text."""
    user = [{"role": "user", "content": _SENT["user"].format(1)}]
    try:
        plain = render_tools(user, True, [])
        with_tools = render_tools(user, True, [PROBE_TOOL])
    except Exception:  # noqa: BLE001 - a template that fails on tools does not render them
        return ToolSupport(False)
    if with_tools == plain:
        return ToolSupport(False)
    spec = PROBE_TOOL["function"]
    if json.dumps(PROBE_TOOL) in with_tools or json.dumps(spec) in with_tools or json.dumps(PROBE_TOOL, indent=4) \
            in with_tools or json.dumps(spec, indent=4) in with_tools:
        return ToolSupport(True, "the chat template writes each tool definition with Jinja's tojson (\", \" and "
                                 "\": \" separators or indented); Ollama writes .Tools only as compact JSON")
    if "wbq_lookup" in with_tools and "WBQKEYDESCQ" in with_tools and json.dumps(spec, separators=(",", ":")) \
            not in with_tools:
        return ToolSupport(True, "the chat template writes tool definitions in a syntax of its own (not JSON); "
                                 "Ollama hands a template the tools as JSON")
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "wbq_lookup", "arguments": PROBE_ARGS}}]}
    try:
        text = render_tools(user + [call], False, [PROBE_TOOL])
    except Exception as exc:  # noqa: BLE001
        return ToolSupport(True, f"the chat template fails on an assistant tool call ({exc})")
    if json.dumps(PROBE_ARGS) in text:
        return ToolSupport(True, "the chat template writes tool-call arguments with Jinja's tojson (\", \" and "
                                 "\": \" separators); Ollama writes .Function.Arguments only as compact JSON")
    if json.dumps(PROBE_ARGS, separators=(",", ":")) not in text:
        return ToolSupport(True, "the chat template writes tool-call arguments in a syntax of its own (not JSON)")
    return ToolSupport(True, "the chat template writes compact JSON tool calls; deriving their Go template is not "
                             "implemented")

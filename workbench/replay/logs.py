"""Readers of logged traffic: each turns one log file into Conversations (workbench.replay.conversations), cut at
the last user or tool turn, with the logged assistant answer kept beside them.

| format | a record |
|---|---|
| openai | a chat-completions request/response pair: `{"request": {model, messages, tools}, "response": {choices:
  [{message}], model}}` (what `wb serve` writes, with id, side, latency_ms, usage), or the flat `{messages,
  choices}` |
| ollama | an `/api/chat` exchange: `{"request": {model, messages, tools}, "response": {message, model}}`, or the flat
  `{model, messages, message}` many Ollama users log (tool-call arguments as objects; converted to OpenAI's shape) |
| langfuse | a Langfuse export: observations as JSONL (the export button of the Observations table), a JSON list of
  them, or one downloaded trace (`trace-<id>.json`, its `observations`). GENERATION observations are read (input:
  messages, or {messages, tools}, or a string; output: an assistant message, a chat.completion or a string); other
  observation types are skipped, not bad |

The format is detected per file from its first records unless given. A record that does not parse or does not fit
its format is named FILE:LINE with the reason (never its content: a log holds personal data) and skipped.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput
from workbench.replay.conversations import Conversation
from workbench.system.user_files import MAX_DEPTH, MAX_JSONL_BYTES, MAX_LINE_BYTES, regular_file
from workbench.toolcalls.calls import ToolCall

FORMATS = ("openai", "ollama", "langfuse")
ROLES = {"system", "user", "assistant", "tool", "developer"}
KNOWN_PARTS = {"text", "image_url", "input_audio", "file", "refusal"}
DETECT_RECORDS = 20  # records looked at to tell a file's format


class BadRecord(ValueError):
    """One record that does not fit its format; the message says why without quoting it."""


@dataclass
class LogFile:
    path: Path
    format: str
    records: int = 0  # non-blank lines (JSONL) or entries (a JSON document)
    conversations: list[Conversation] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # "FILE:LINE: why"
    skipped: int = 0  # records that hold no conversation: a Langfuse span, a canary record without content


def read_log(path: str | os.PathLike, fmt: str | None = None) -> LogFile:
    """Every conversation of one log file. A file in no known format (or not the one given) is a BadInput."""
    if fmt is not None and fmt not in FORMATS:
        raise BadInput(f"--format {fmt}: unknown log format (choose from {', '.join(FORMATS)})")
    path = regular_file(path, "a log file (JSONL)")
    if path.stat().st_size > MAX_JSONL_BYTES:
        raise BadInput(f"{path}: larger than {MAX_JSONL_BYTES >> 30} GiB")
    records = _records(path)
    if fmt is None:
        fmt = _detect(path, records)
    log = LogFile(path, fmt)
    read = READERS[fmt]
    for where, value in records:
        log.records += 1
        if isinstance(value, BadRecord):
            log.bad.append(f"{where}: {value}")
            continue
        shape = _shape(value)
        if shape is not None and shape != fmt:
            log.bad.append(f"{where}: a record of the {shape} format, not {fmt}")
            continue
        try:
            convos = read(value, where)
        except BadRecord as exc:
            log.bad.append(f"{where}: {exc}")
            continue
        log.skipped += not convos
        for i, convo in enumerate(convos):
            convo.source = where if len(convos) == 1 else f"{where}#{i}"
            log.conversations.append(convo)
    return log



# ---- records --------------------------------------------------------------------------------------------------

def _records(path: Path) -> list[tuple[str, object]]:
    """(where, value or BadRecord) per record: one per non-blank line, or per entry of a whole-file JSON list or
    document (a Langfuse trace download is pretty-printed JSON, not JSONL)."""
    data = path.read_bytes()
    head = data.lstrip()[:1]
    if head == b"[" or (head == b"{" and b"\n" in data.strip()):
        try:
            whole = json.loads(data)
        except (ValueError, RecursionError):
            whole = None  # JSONL: read line by line below
        if isinstance(whole, list):
            return [(f"{path}:[{i}]", v) for i, v in enumerate(whole)]
        if isinstance(whole, dict):
            return [(f"{path}:1", whole)]
    out = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        if len(raw) > MAX_LINE_BYTES:
            out.append((where, BadRecord(f"a line longer than {MAX_LINE_BYTES >> 20} MiB")))
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append((where, BadRecord("not UTF-8 text")))
            continue
        except RecursionError:
            out.append((where, BadRecord(f"JSON nested deeper than {MAX_DEPTH} levels")))
            continue
        except ValueError as exc:
            out.append((where, BadRecord(f"not valid JSON ({exc.msg})")))
            continue
        out.append((where, value if isinstance(value, dict) else BadRecord("not a JSON object")))
    return out


def _shape(value) -> str | None:
    if not isinstance(value, dict):
        return None
    req, resp = value.get("request"), value.get("response")
    if isinstance(req, dict):
        if isinstance(resp, dict) and "message" in resp and "choices" not in resp:
            return "ollama"
        return "openai"
    if "choices" in value and "messages" in value:
        return "openai"
    if "message" in value and "messages" in value:
        return "ollama"
    if "observations" in value or "traceId" in value or "trace_id" in value or (
            str(value.get("type", "")).upper() == "GENERATION" and "input" in value):
        return "langfuse"
    return None


def _detect(path: Path, records: list) -> str:
    for _, value in records[:DETECT_RECORDS]:
        shape = _shape(value)
        if shape:
            return shape
    raise BadInput(f"{path}: not a log in a known format (openai: request/response; ollama: request/response "
                   "with response.message, or messages/message; langfuse: observations with traceId); give "
                   "--format if it is one")


# ---- messages -------------------------------------------------------------------------------------------------

def _content(value, where: str):
    """A message's content as a string: OpenAI's text parts joined; other parts (images, audio) are refused."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else None
                kind = kind if kind in KNOWN_PARTS else "other"  # never a logged value in the message
                raise BadRecord(f"{where}: a content part of type {kind} (only text is replayed)")
            texts.append(part["text"])
        return "\n".join(texts)
    raise BadRecord(f"{where}: content is neither a string nor a list of text parts")


def _message(m, where: str, *, ollama: bool = False) -> dict:
    if not isinstance(m, dict) or m.get("role") not in ROLES:
        raise BadRecord(f"{where}: expected a message with a role in {sorted(ROLES)}")
    if ollama and m.get("images"):
        raise BadRecord(f"{where}: images (only text is replayed)")
    out = {"role": m["role"], "content": _content(m.get("content"), where)}
    calls = m.get("tool_calls")
    if calls:
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise BadRecord(f"{where}.tool_calls: expected a list of tool calls")
        if ollama:  # arguments are objects in Ollama's API: OpenAI's shape is arguments as JSON text
            try:
                calls = [ToolCall.from_openai(c).to_openai(id=c.get("id") or f"call_{i}")
                         for i, c in enumerate(calls)]
            except (KeyError, TypeError, ValueError):
                raise BadRecord(f"{where}.tool_calls: expected {{function: {{name, arguments}}}}") from None
        out["tool_calls"] = calls
    for key in ("tool_call_id", "name"):
        if isinstance(m.get(key), str):
            out[key] = m[key]
    if ollama and isinstance(m.get("tool_name"), str):
        out["name"] = m["tool_name"]
    if out["content"] is None and not calls:
        out["content"] = ""
    return out


def _messages(value, where: str, *, ollama: bool = False) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise BadRecord(f"{where}: expected a non-empty list of messages")
    return [_message(m, f"{where}.{i}", ollama=ollama) for i, m in enumerate(value)]


def _conversation(messages: list[dict], answer: dict | None, *, id: str, tools, model, meta: dict,
                  where: str) -> Conversation:
    """Cut at the last user or tool turn: what follows it (an assistant turn logged inside the request) is the
    logged answer when the record has none of its own."""
    last = max((i for i, m in enumerate(messages) if m["role"] in ("user", "tool")), default=None)
    if last is None:
        raise BadRecord(f"{where}: no user turn")
    trailing = [m for m in messages[last + 1:] if m["role"] == "assistant"]
    if answer is None and trailing:
        answer = trailing[0]
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise BadRecord(f"{where}: tools: expected a list of function specs")
    return Conversation(id=str(id), messages=messages[:last + 1], logged_answer=answer, tools=tools or None,
                        model=model if isinstance(model, str) else None, meta=meta)


# ---- the formats ----------------------------------------------------------------------------------------------

def _openai(record: dict, where: str) -> list[Conversation]:
    req = record["request"] if isinstance(record.get("request"), dict) else record
    resp = record.get("response") if "request" in record else record
    if "messages" not in req:
        if "request" in record:  # a canary record written with --no-content: nothing to replay
            return []
        raise BadRecord("request: no messages")
    messages = _messages(req["messages"], "request.messages")
    answer = None
    if resp is not None:
        if not isinstance(resp, dict):
            raise BadRecord("response: expected a chat.completion object or null")
        choices = resp.get("choices")
        if choices:
            if not isinstance(choices, list) or not isinstance(choices[0], dict) or "message" not in choices[0]:
                raise BadRecord("response.choices.0: expected {message}")
            answer = _message(choices[0]["message"], "response.choices.0.message")
    meta = {k: record[k] for k in ("side", "latency_ms", "usage", "status", "time") if k in record}
    if record.get("error"):
        meta["error"] = True  # the upstream's error text may quote the request: kept out
    shadow = record.get("shadow")
    if isinstance(shadow, dict):
        meta["shadow"] = {k: shadow[k] for k in ("side", "latency_ms") if k in shadow}
        choices = (shadow.get("response") or {}).get("choices") if isinstance(shadow.get("response"), dict) else None
        if choices and isinstance(choices[0], dict) and "message" in choices[0]:
            meta["shadow_answer"] = _message(choices[0]["message"], "shadow.response.choices.0.message")
    model = (resp or {}).get("model") or req.get("model")
    rid = record.get("id") or (resp or {}).get("id") or where
    return [_conversation(messages, answer, id=rid, tools=req.get("tools"), model=model, meta=meta, where="request")]


def _ollama(record: dict, where: str) -> list[Conversation]:
    nested = isinstance(record.get("request"), dict)
    req = record["request"] if nested else record
    resp = record.get("response") if nested else record
    messages = _messages(req.get("messages"), "request.messages" if nested else "messages", ollama=True)
    answer = None
    if resp is not None:
        if not isinstance(resp, dict):
            raise BadRecord("response: expected an /api/chat response object or null")
        if "message" in resp:
            answer = _message(resp["message"], "response.message" if nested else "message", ollama=True)
    meta = {k: resp[k] for k in ("total_duration", "eval_count", "prompt_eval_count")
            if isinstance(resp, dict) and k in resp}
    model = (resp or {}).get("model") or req.get("model")
    rid = record.get("id") or where
    return [_conversation(messages, answer, id=rid, tools=req.get("tools"), model=model, meta=meta, where="request")]


def _langfuse(record: dict, where: str) -> list[Conversation]:
    if isinstance(record.get("observations"), list):  # a downloaded trace: its generations
        out = []
        for i, obs in enumerate(record["observations"]):
            if isinstance(obs, dict) and str(obs.get("type", "")).upper() == "GENERATION":
                try:
                    out += _langfuse(obs, where)
                except BadRecord as exc:
                    raise BadRecord(f"observations.{i}: {exc}") from None
        return out
    if str(record.get("type", "")).upper() != "GENERATION":
        return []  # a span, an event, a trace without its observations: no model call to replay
    inp, tools = record.get("input"), None
    if isinstance(inp, dict):
        tools = inp.get("tools")
        inp = inp.get("messages")
    if isinstance(inp, str):
        inp = [{"role": "user", "content": inp}]
    messages = _messages(inp, "input")
    out, answer = record.get("output"), None
    if isinstance(out, dict) and isinstance(out.get("choices"), list) and out["choices"]:
        out = out["choices"][0].get("message") if isinstance(out["choices"][0], dict) else None
    if isinstance(out, str):
        answer = {"role": "assistant", "content": out}
    elif isinstance(out, dict):
        answer = _message({"role": "assistant", **out}, "output")
    elif out is not None:
        raise BadRecord("output: expected a message, a chat.completion or a string")
    if tools is None and isinstance(record.get("modelParameters"), dict):
        tools = record["modelParameters"].get("tools")
    meta = {k: record[k] for k in ("traceId", "startTime", "usage") if k in record}
    return [_conversation(messages, answer, id=record.get("id") or where, tools=tools, model=record.get("model"),
                          meta=meta, where="input")]


READERS = {"openai": _openai, "ollama": _ollama, "langfuse": _langfuse}

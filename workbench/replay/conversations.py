"""The unit of logged traffic every reader produces and `wb replay` consumes, and the record `wb serve` writes.

A canary log (`wb serve`) is JSONL in the shape of the `openai` log format, one exchange per line:

    {"id": "...", "time": "2026-12-05T14:00:00.123Z", "side": "baseline" | "candidate", "user": "...",
     "request": {chat.completions request body: model, messages, tools, ...},
     "response": {chat.completion object: choices[0].message (content, tool_calls), usage, model} | null,
     "shadow": {"side": "candidate", "response": {...}, "latency_ms": ..., "error": ...} | absent,
     "latency_ms": 12.3, "usage": {"prompt_tokens": ..., "completion_tokens": ...}, "error": null | "...",
     "status": 200}

With `--no-content` the request's messages/tools and the response's message content are left out. `wb serve` also
writes `routed` (the side the user's key hashes to), `stream`, for a stream `first_byte_ms` and `chunks` (its
response is the completion put back together; `usage` null when the server sent none), `failover` ({side, status,
latency_ms, error} of a candidate that failed, `side` then being the baseline that answered), and `usage`/`status`
inside `shadow`; readers ignore fields they do not use. Any JSONL whose
lines carry `request.messages` and `response.choices[0].message` (an OpenAI chat-completions request/response
pair) reads the same way.
"""

from dataclasses import dataclass, field


@dataclass
class Conversation:
    """One logged conversation, cut at its last user turn."""

    id: str
    """The logged id (the record's `id`, else `FILE:LINE`)."""
    messages: list[dict]
    """OpenAI-shaped messages up to and including the last user (or tool) turn: what a candidate answers."""
    logged_answer: dict | None = None
    """The assistant message the log holds for that turn (content and/or tool_calls), if any."""
    tools: list[dict] | None = None
    """The request's `tools` (OpenAI function specs), if any."""
    model: str | None = None
    """The logged model name (a stratum of `--sample`)."""
    source: str = ""
    """FILE:LINE it was read from."""
    meta: dict = field(default_factory=dict)
    """Anything else kept from the log (side, latency_ms, usage)."""

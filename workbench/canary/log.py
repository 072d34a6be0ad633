"""The canary's log: one JSON record per exchange appended to `log.jsonl` in the canary's run folder, in the shape
workbench.replay.conversations documents (what `wb replay` reads).

Each record is one os.write of the whole line on an O_APPEND descriptor, from the one process that writes the log:
a kill -9 leaves whole lines only, never a torn or interleaved one. With `no_content`, the request's messages and
tools and the answers' text and tool calls are left out before the record is made; headers (and with them any key)
are never part of a record."""

import datetime as dt
import os
import uuid
from pathlib import Path

from workbench.errors import EnvironmentProblem
from workbench.store.files import strict_json

LOG_NAME = "log.jsonl"
CONTENT_FIELDS = ("messages", "tools", "functions", "tool_choice", "prompt")


def timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_without_content(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in CONTENT_FIELDS}


def response_without_content(response: dict | None) -> dict | None:
    """The completion with every choice's message (or delta) reduced to its role: ids, finish reasons and usage
    remain."""
    if not isinstance(response, dict):
        return response
    choices = []
    for choice in response.get("choices") or []:
        if isinstance(choice, dict):
            message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            choices.append({k: v for k, v in choice.items() if k not in ("message", "delta", "logprobs", "text")}
                           | {"message": {"role": message.get("role", "assistant")}})
    return {**response, "choices": choices}


def exchange_record(*, side: str, user: str, request: dict, response: dict | None, latency_ms: float,
                    status: int, error: str | None, no_content: bool, shadow: dict | None = None, **extra) -> dict:
    """One log record; `extra` fields (routed, failover, stream) follow the documented ones."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if no_content:
        request, response = request_without_content(request), response_without_content(response)
        if shadow is not None:
            shadow = {**shadow, "response": response_without_content(shadow.get("response"))}
    record = {"id": uuid.uuid4().hex, "time": timestamp(), "side": side, "user": user, "request": request,
              "response": response}
    if shadow is not None:
        record["shadow"] = shadow
    return record | {"latency_ms": round(latency_ms, 2), "usage": usage, "error": error, "status": status, **extra}


class CanaryLog:
    """Appends records to one JSONL file; the only writer of it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict) -> None:
        line = (strict_json(record, ensure_ascii=False) + "\n").encode()
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise EnvironmentProblem(f"{self.path}: cannot append to the canary log ({exc.strerror})") from None
        if written != len(line):  # a regular file takes the whole line unless the disk is full
            raise EnvironmentProblem(f"{self.path}: the disk took {written} of a record's {len(line)} bytes")
        self.records += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

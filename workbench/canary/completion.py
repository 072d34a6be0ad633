"""A streamed chat completion put back together: the SSE `data:` chunks of an OpenAI-compatible stream, fed as they
pass through the router, become the one chat.completion object a non-streamed request would have returned (content
and tool-call argument pieces joined, the finish reason and usage where the server sent them)."""

import json


class StreamedCompletion:
    def __init__(self):
        self._pending = b""
        self.chunks = 0
        self.done = False
        self.meta: dict = {}
        self.usage: dict | None = None
        self.choices: dict[int, dict] = {}

    def feed(self, data: bytes) -> None:
        """Bytes as they arrive (events may be split anywhere)."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            return  # not JSON: passed on to the client as it came, left out of the record
        if not isinstance(chunk, dict):
            return
        self.chunks += 1
        for key in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(key) is not None:
                self.meta.setdefault(key, chunk[key])
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                self._choice(choice)

    def _choice(self, choice: dict) -> None:
        index = choice.get("index", 0)
        acc = self.choices.setdefault(index, {"index": index, "role": "assistant", "content": None, "tool_calls": {},
                                              "finish_reason": None})
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        if delta.get("role"):
            acc["role"] = delta["role"]
        for key in ("content", "reasoning_content"):
            if isinstance(delta.get(key), str):
                acc[key] = (acc.get(key) or "") + delta[key]
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            slot = acc["tool_calls"].setdefault(call.get("index", len(acc["tool_calls"])),
                                                {"id": None, "type": "function",
                                                 "function": {"name": "", "arguments": ""}})
            if call.get("id"):
                slot["id"] = call["id"]
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""
        if choice.get("finish_reason"):
            acc["finish_reason"] = choice["finish_reason"]

    def completion(self) -> dict:
        choices = []
        for index in sorted(self.choices):
            acc = self.choices[index]
            # as a non-streamed answer has it: "" for no text, None beside tool calls
            content = acc["content"] if acc["content"] is not None or acc["tool_calls"] else ""
            message = {"role": acc["role"], "content": content}
            if acc.get("reasoning_content") is not None:
                message["reasoning_content"] = acc["reasoning_content"]
            if acc["tool_calls"]:
                message["tool_calls"] = [acc["tool_calls"][i] for i in sorted(acc["tool_calls"])]
            choices.append({"index": index, "message": message, "finish_reason": acc["finish_reason"]})
        return {**self.meta, "object": "chat.completion", "choices": choices, "usage": self.usage}

"""One tool call in the shape every part of wb exchanges: a function name and its arguments as a JSON object.

OpenAI messages carry `{"type": "function", "function": {"name": ..., "arguments": "<JSON text>"}}`; Hugging Face
templates read `arguments` as an object; Ollama passes `Function.Name` and `Function.Arguments` (an object).
"""

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)

    @classmethod
    def from_openai(cls, call: dict) -> "ToolCall":
        """From an OpenAI `tool_calls` entry (arguments as JSON text or an object)."""
        fn = call.get("function", call)
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        if not isinstance(args, dict):
            raise ValueError(f"tool call {fn.get('name')!r}: arguments are not a JSON object")
        return cls(name=str(fn["name"]), arguments=args)

    def to_openai(self, id: str | None = None) -> dict:
        out = {"type": "function", "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}
        return {"id": id, **out} if id else out

    def to_template(self) -> dict:
        """The form chat templates read (`tool_call.function.arguments` an object)."""
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}

"""Training-data formats, detected from a file's first row or declared: each row becomes one conversation.

| format | a row |
|---|---|
| messages | {"messages": [{"role", "content"}, ...]} (ChatML-style); wb's task items add a "reference" answer |
| sharegpt | {"conversations": [{"from": human/gpt/system/function_call/observation, "value"}, ...]} |
| alpaca | {"instruction", "input" (optional), "output"} |
| prompt_completion | {"prompt", "completion"}: strings, or message lists |
| preference | {"prompt", "chosen", "rejected"}: strings or message lists (also chosen/rejected alone) |
| unpaired | {"prompt", "completion", "label": true/false}: KTO's unpaired preference rows |
| prompt | {"prompt"} and an optional "reference": prompt-only rows (GRPO; the reference is what the reward scores) |

Rows with tools (workbench.toolcalls.rows) carry `tools` (function specs) beside their turns: assistant turns may
hold `tool_calls` (their content may then be empty), `tool` turns the results; in ShareGPT rows `function_call` and
`observation` turns. Every call must name a declared function with arguments valid against its schema.

A row that does not fit is named as file:line with its field, and nothing trains.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from workbench.data.records import json_objects
from workbench.errors import BadInput
from workbench.system.user_files import regular_file
from workbench.toolcalls.rows import chat_message, check_calls, parse_tools, sharegpt_calls

FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "preference", "unpaired", "prompt")
ROLES = {"system", "user", "assistant", "tool"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "model": "assistant", "tool": "tool", "observation": "tool",
                  "function_call": "assistant"}


@dataclass
class Row:
    line: int
    messages: list[dict]  # the conversation (for preference, unpaired and prompt rows: the prompt)
    chosen: list[dict] = field(default_factory=list)  # preference rows only
    rejected: list[dict] = field(default_factory=list)
    completion: list[dict] = field(default_factory=list)  # unpaired rows: the completion `label` judges
    label: bool | None = None
    reference: str | None = None  # prompt rows
    tools: list[dict] | None = None  # the functions the row declares (OpenAI specs), for rows with tool calls

    def text(self) -> str:
        """Every turn's text, for hygiene checks (duplicates, lengths, contamination)."""
        turns = self.messages + self.chosen + self.rejected + self.completion
        texts = [m["content"] + "".join(json.dumps(c["function"]) for c in m.get("tool_calls", [])) for m in turns]
        return " ".join(texts + ([self.reference] if self.reference else []))


def detect(row: dict) -> str | None:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "chosen" in row or "rejected" in row:
        return "preference"
    if "prompt" in row and "completion" in row:
        return "unpaired" if "label" in row else "prompt_completion"
    if "prompt" in row:
        return "prompt"
    return None


def _turns(where: str, key: str, value, *, as_role: str | None = None) -> list[dict]:
    """A string (one turn of `as_role`) or a message list."""
    if isinstance(value, str) and as_role:
        return [{"role": as_role, "content": value}]
    if not isinstance(value, list) or not value:
        raise BadInput(f"{where}: {key}: expected {'a string or ' if as_role else ''}a non-empty list of messages")
    return [chat_message(where, f"{key}.{i}", m, ROLES) for i, m in enumerate(value)]


def _text(where: str, row: dict, key: str, *, required: bool = True) -> str:
    value = row.get(key, "" if not required else None)
    if not isinstance(value, str):
        raise BadInput(f"{where}: {key}: {'missing' if key not in row else 'expected a string'}")
    return value


def parse_row(fmt: str, row: dict, where: str, line: int) -> Row:
    """One row of format `fmt`; with its `tools` (and every call checked against them) where it has them."""
    parsed = _parse_row(fmt, row, where, line)
    if "tools" in row:
        parsed.tools = parse_tools(where, row["tools"])
    for key in ("messages", "chosen", "rejected", "completion"):
        check_calls(where, parsed.tools, getattr(parsed, key), "conversations" if fmt == "sharegpt" else key)
    return parsed


def _parse_row(fmt: str, row: dict, where: str, line: int) -> Row:
    if fmt == "messages":
        msgs = _turns(where, "messages", row.get("messages"))
        if "reference" in row:  # a wb task item: the reference is the assistant's answer
            ref = row["reference"]
            msgs.append({"role": "assistant", "content": ref if isinstance(ref, str) else json.dumps(ref)})
        return Row(line, msgs)
    if fmt == "sharegpt":
        convo = row.get("conversations")
        if not isinstance(convo, list) or not convo:
            raise BadInput(f"{where}: conversations: expected a non-empty list of {{from, value}}")
        msgs = []
        for i, turn in enumerate(convo):
            role = SHAREGPT_ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
            if role is None or not isinstance(turn.get("value"), str):
                raise BadInput(f"{where}: conversations.{i}: expected {{from: {'/'.join(SHAREGPT_ROLES)}, value}}")
            if turn["from"] == "function_call":
                msgs.append({"role": "assistant", "content": "",
                             "tool_calls": sharegpt_calls(f"{where}: conversations.{i}.value", turn["value"])})
            else:
                msgs.append({"role": role, "content": turn["value"]})
        return Row(line, msgs)
    if fmt == "alpaca":
        instruction, extra = _text(where, row, "instruction"), _text(where, row, "input", required=False)
        prompt = f"{instruction}\n\n{extra}" if extra else instruction
        return Row(line, [{"role": "user", "content": prompt},
                          {"role": "assistant", "content": _text(where, row, "output")}])
    if fmt == "prompt_completion":
        prompt = _turns(where, "prompt", row.get("prompt"), as_role="user")
        return Row(line, prompt + _turns(where, "completion", row.get("completion"), as_role="assistant"))
    if fmt == "preference":
        for key in ("chosen", "rejected"):
            if key not in row:
                raise BadInput(f"{where}: {key}: missing (a preference row has prompt, chosen and rejected)")
        prompt = _turns(where, "prompt", row["prompt"], as_role="user") if "prompt" in row else []
        return Row(line, prompt, _turns(where, "chosen", row["chosen"], as_role="assistant"),
                   _turns(where, "rejected", row["rejected"], as_role="assistant"))
    if fmt == "unpaired":
        if not isinstance(row.get("label"), bool):
            raise BadInput(f"{where}: label: {'missing' if 'label' not in row else 'expected true or false'} "
                           "(an unpaired row says whether its completion is desirable)")
        return Row(line, _turns(where, "prompt", row.get("prompt"), as_role="user"),
                   completion=_turns(where, "completion", row.get("completion"), as_role="assistant"),
                   label=row["label"])
    if fmt == "prompt":
        ref = row.get("reference")
        return Row(line, _turns(where, "prompt", row.get("prompt"), as_role="user"),
                   reference=None if ref is None else ref if isinstance(ref, str) else json.dumps(ref))
    raise BadInput(f"unknown data format '{fmt}' (choose from {', '.join(FORMATS)})")


def load_rows(path: Path, fmt: str | None = None) -> tuple[str, list[Row]]:
    """(format, rows) of a JSONL file; every row is checked, and the first bad one is named."""
    if fmt is not None and fmt not in FORMATS:
        raise BadInput(f"unknown data format '{fmt}' (choose from {', '.join(FORMATS)})")
    regular_file(path, "a JSONL file")
    rows = []
    for line, where, row in json_objects(path):
        if fmt is None:
            fmt = detect(row)
            if fmt is None:
                raise BadInput(f"{where}: unknown row format (keys {', '.join(sorted(row)) or 'none'}); expected "
                               "messages, conversations (ShareGPT), instruction/output (Alpaca), "
                               "prompt/completion, prompt/chosen/rejected, prompt/completion/label or prompt")
        rows.append(parse_row(fmt, row, where, line))
    if not rows:
        raise BadInput(f"{path}: no rows")
    return fmt, rows

"""Reading chat items (JSONL rows with messages or a prompt, plus a reference) and checking them. An item may
declare `tools` (function specs the runtimes render with its conversation; workbench.toolcalls.rows)."""

import hashlib
from pathlib import Path

from workbench.errors import BadInput
from workbench.system.user_files import json_lines
from workbench.toolcalls.rows import chat_message, check_calls, parse_tools

ROLES = {"system", "user", "assistant", "tool"}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_objects(path: Path):
    """(line number, "file:line", object) for each non-blank line of a JSONL file; a line that is not UTF-8, not
    JSON (or past user_files' bounds) or not an object is a BadInput naming file:line."""
    for lineno, where, row in json_lines(path):
        if not isinstance(row, dict):
            raise BadInput(f"{where}: expected a JSON object")
        yield lineno, where, row


def load_chat_items(path: Path, *, need_reference: bool = True) -> list[dict]:
    """Rows as {"id", "messages", "reference", "tags", "metadata"}; a plain "prompt" becomes one user message.
    "tags" (a list of strings) and "metadata" (any JSON) are optional: [] and None when left out. "tools" (function
    specs; earlier assistant turns may call them, `tool` turns answer) and "possible_answer" (BFCL's, for the
    tool_call scorer, docs/tools.md) are kept when given; an item with possible answers needs no reference."""
    items, seen = [], set()
    for lineno, where, row in json_objects(path):
        tools = parse_tools(where, row["tools"]) if "tools" in row else None
        if "messages" in row:
            messages = row["messages"]
            if not isinstance(messages, list) or not messages:
                raise BadInput(f"{where}: messages: expected a list of {{role, content}} with roles {sorted(ROLES)}")
            try:
                messages = [chat_message(where, f"messages.{i}", m, ROLES) for i, m in enumerate(messages)]
            except BadInput:
                raise BadInput(f"{where}: messages: expected a list of {{role, content}} with roles "
                               f"{sorted(ROLES)}") from None
            check_calls(where, tools, messages)
        elif isinstance(row.get("prompt"), str):
            messages = [{"role": "user", "content": row["prompt"]}]
        else:
            raise BadInput(f"{where}: needs 'messages' (chat) or 'prompt' (string)")
        if need_reference and "reference" not in row and "possible_answer" not in row:
            raise BadInput(f"{where}: missing 'reference'")
        item_id = str(row.get("id", lineno))
        if item_id in seen:
            raise BadInput(f"{where}: duplicate id '{item_id}'")
        seen.add(item_id)
        tags = row.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise BadInput(f"{where}: tags: expected a list of non-empty strings")
        items.append({"id": item_id, "messages": messages, "reference": row.get("reference"),
                      "tags": list(dict.fromkeys(tags)), "metadata": row.get("metadata"),
                      **({"tools": tools} if tools is not None else {}),
                      **({"possible_answer": row["possible_answer"]} if "possible_answer" in row else {})})
    if not items:
        raise BadInput(f"{path}: no rows")
    return items


"""Training rows in the shape each TRL trainer reads, from any format workbench.data.formats parses.

| method | reads | TRL rows (conversational) |
|---|---|---|
| sft | messages, sharegpt, alpaca, prompt_completion, prompt (wb's task items: prompt + reference) | prompt / completion: the last assistant turn (or the reference) is the completion, where the loss falls |
| dpo, orpo | preference | prompt / chosen / rejected |
| kto | unpaired, or preference (each pair gives a desirable and an undesirable row) | prompt / completion / label |
| grpo | prompt, or any conversation format (its last assistant turn is the reference) | prompt / reference |

A row with `tools` keeps them (TRL renders each row with apply_chat_template(tools=...)); its messages go into the
dataset as JSON values (training_dataset), so that rows calling different functions keep their own arguments.
GRPO's and ORPO's trainers render no tools (TRL 1.x): a tool row is refused there.

A row that does not fit is a BadInput naming file:line; a file of the wrong kind for the method names both.
"""

from pathlib import Path

from workbench.data.formats import Row, load_rows
from workbench.errors import BadInput
from workbench.system.extras import require

CONVERSATIONS = ("messages", "sharegpt", "alpaca", "prompt_completion")
READS = {
    "sft": (*CONVERSATIONS, "prompt"),
    "dpo": ("preference",),
    "orpo": ("preference",),
    "kto": ("unpaired", "preference"),
    "grpo": ("prompt", *CONVERSATIONS),
}
WHAT = {"sft": "conversations (messages, ShareGPT, Alpaca, prompt/completion or prompt/reference rows)",
        "dpo": "preference rows (prompt/chosen/rejected)", "orpo": "preference rows (prompt/chosen/rejected)",
        "kto": "unpaired rows (prompt/completion/label) or preference rows",
        "grpo": "prompts (prompt rows, or conversations whose last answer is the reference)"}


def method_rows(method: str, path: Path, fmt: str | None = None) -> tuple[str, list[Row], list[dict]]:
    """(format, parsed rows, TRL rows) of a training file for `method`."""
    fmt, rows = load_rows(path, fmt)
    if fmt not in READS[method]:
        raise BadInput(f"{path}: method {method} trains on {WHAT[method]}; this file holds {fmt} rows")
    convert = {"sft": _sft, "dpo": _pair, "orpo": _pair, "kto": _unpaired, "grpo": _prompt}[method]
    out = []
    for row in rows:
        if row.tools is not None and method in ("grpo", "orpo"):
            raise BadInput(f"{path}:{row.line}: tools: TRL's {method} trainer does not render tools; train tool calls "
                           "with sft, dpo or kto")
        examples = convert(row, f"{path}:{row.line}", fmt)
        out.extend({**ex, "tools": row.tools} if row.tools is not None else ex for ex in examples)
    return fmt, rows, out


def training_dataset(examples: list[dict]):
    """The datasets.Dataset a TRL trainer reads. With tool calls, every message column is a list of JSON values:
    Arrow would otherwise merge the arguments of all functions into one struct (`{"name": "Bo", "phone": null}`)."""
    datasets = require("datasets", "Training", "train")
    if not any("tools" in ex for ex in examples):
        return datasets.Dataset.from_list(examples)
    columns = {key for ex in examples for key in ex}
    features = {key: datasets.List(datasets.Json()) if key in ("prompt", "completion", "chosen", "rejected")
                else datasets.Json() if key == "tools" else datasets.Value("bool") for key in columns}
    return datasets.Dataset.from_list([{**ex, "tools": ex.get("tools")} for ex in examples],
                                      features=datasets.Features(features))


def _split_last_answer(row: Row, where: str, fmt: str) -> tuple[list[dict], dict]:
    if fmt == "prompt":  # a task item: its reference is the answer
        if row.reference is None:
            raise BadInput(f"{where}: reference: missing (the answer the model learns)")
        return row.messages, {"role": "assistant", "content": row.reference}
    last = row.messages[-1]
    if last["role"] != "assistant" or len(row.messages) < 2:
        missing = "reference: missing, and " if fmt == "messages" else ""
        raise BadInput(f"{where}: {missing}the conversation does not end with an assistant turn after the prompt "
                       "(the answer the model learns)")
    return row.messages[:-1], last


def _sft(row: Row, where: str, fmt: str) -> list[dict]:
    prompt, answer = _split_last_answer(row, where, fmt)
    return [{"prompt": prompt, "completion": [answer]}]


def _prompt_and_pair(row: Row, where: str) -> tuple[list[dict], list[dict], list[dict]]:
    """A pair given without a prompt is two whole conversations: their shared leading turns are the prompt."""
    if row.messages:
        return row.messages, row.chosen, row.rejected
    n = 0
    while n < min(len(row.chosen), len(row.rejected)) - 1 and row.chosen[n] == row.rejected[n]:
        n += 1
    if n == 0:
        raise BadInput(f"{where}: prompt: missing (and chosen/rejected share no leading turns to take it from)")
    return row.chosen[:n], row.chosen[n:], row.rejected[n:]


def _pair(row: Row, where: str, fmt: str) -> list[dict]:
    prompt, chosen, rejected = _prompt_and_pair(row, where)
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected}]


def _unpaired(row: Row, where: str, fmt: str) -> list[dict]:
    if fmt == "unpaired":
        return [{"prompt": row.messages, "completion": row.completion, "label": row.label}]
    prompt, chosen, rejected = _prompt_and_pair(row, where)
    return [{"prompt": prompt, "completion": chosen, "label": True},
            {"prompt": prompt, "completion": rejected, "label": False}]


def _prompt(row: Row, where: str, fmt: str) -> list[dict]:
    if fmt == "prompt":
        return [{"prompt": row.messages, "reference": row.reference}]
    prompt, answer = _split_last_answer(row, where, fmt)
    return [{"prompt": prompt, "reference": answer["content"]}]

"""The eval items a training set is checked against: a suite's own task files and its lm-eval tasks, lm-eval task
names read from the benchmark mirror (--data-dir / WB_DATA_DIR), or a JSONL file of items."""

import json
from pathlib import Path

from workbench.data.contamination import EvalItem, words
from workbench.data.records import json_objects
from workbench.errors import BadInput
from workbench.eval.mirrors import MIRRORS


def _rows(path: Path):
    for lineno, _, row in json_objects(path):
        yield lineno, row


def _mirror_folder(data_dir: Path | None, name: str) -> Path:
    if data_dir is None:
        raise BadInput(f"checking against {name} reads it from the benchmark mirror: set WB_DATA_DIR (or pass "
                       "--data-dir to `wb data check`)")
    folder = data_dir / next(m.folder for m in MIRRORS if m.folder == name.split("_")[0])
    if not folder.is_dir():
        raise BadInput(f"data dir {data_dir}: no {folder.name}/ folder (the mirror of {name})")
    return folder


def mmlu_items(data_dir: Path | None, subject: str | None = None) -> list[EvalItem]:
    """MMLU test questions with their choices (a training row that copies both shares the n-grams)."""
    test = _mirror_folder(data_dir, "mmlu") / "test"
    files = [test / f"{subject}.jsonl"] if subject else sorted(test.glob("*.jsonl"))
    if subject and not files[0].is_file():
        raise BadInput(f"mmlu_{subject}: no {files[0]} in the mirror (an MMLU subject, e.g. mmlu_anatomy)")
    items = []
    for path in files:
        for lineno, row in _rows(path):
            text = " ".join([str(row.get("question", ""))] + [str(c) for c in row.get("choices") or []])
            items.append(EvalItem(f"{path.parent.parent.name}/test/{path.name}:{lineno}", text))
    return items


def gsm8k_items(data_dir: Path | None) -> list[EvalItem]:
    path = _mirror_folder(data_dir, "gsm8k") / "test.jsonl"
    return [EvalItem(f"gsm8k/test.jsonl:{lineno}", f"{row.get('question', '')} {row.get('answer', '')}")
            for lineno, row in _rows(path)]


def task_items(name: str, data_dir: Path | None, where: str = "--against") -> list[EvalItem]:
    """An lm-eval task the mirror holds: mmlu (every subject), mmlu_<subject>, gsm8k."""
    if name == "mmlu":
        return mmlu_items(data_dir)
    if name.startswith("mmlu_"):
        return mmlu_items(data_dir, name[len("mmlu_"):])
    if name == "gsm8k":
        return gsm8k_items(data_dir)
    raise BadInput(f"{where} {name}: not a suite, a JSONL file or an lm-eval task the benchmark mirror holds "
                   "(mmlu, mmlu_<subject>, gsm8k)")


def chat_item_text(item: dict) -> str:
    parts = [m["content"] for m in item["messages"]]
    if item.get("reference") is not None:
        parts.append(item["reference"] if isinstance(item["reference"], str) else json.dumps(item["reference"]))
    return " ".join(parts)


def without_shared_instruction(texts: list[str]) -> list[str]:
    """A task's items minus the words every one of them starts with (its instruction): that text is in the
    training rows on purpose, and says nothing about a leak of the items themselves."""
    if len(texts) < 2:
        return texts
    split = [words(t) for t in texts]
    common = 0
    for column in zip(*split):
        if len(set(column)) != 1:
            break
        common += 1
    return [" ".join(ws[common:]) for ws in split]


def file_items(path: Path) -> list[EvalItem]:
    """Items of a JSONL file: chat items (messages/prompt + reference), or rows with a question."""
    items = []
    for lineno, row in _rows(path):
        if "messages" in row or "prompt" in row:
            msgs = row.get("messages") or [{"content": str(row.get("prompt", ""))}]
            text = " ".join(str(m.get("content", "")) for m in msgs if isinstance(m, dict))
            ref = row.get("reference")
            text += " " + (ref if isinstance(ref, str) else json.dumps(ref)) if ref is not None else ""
        elif "question" in row:
            text = " ".join(str(row[k]) for k in ("question", "answer") if k in row)
        else:
            raise BadInput(f"{path}:{lineno}: an eval item needs 'messages', 'prompt' or 'question'")
        items.append(EvalItem(f"{path.name}:{lineno}", text))
    return items


def against_items(refs: list[str], data_dir: Path | None, evals_dir: str | None = None, *,
                  relative_to: Path | None = None, where: str = "--against") -> list[EvalItem]:
    """Every eval item named by --against: suites (name or path), JSONL files, lm-eval task names. relative_to:
    the folder relative paths are read from (a recipe's own, for its data_checks.against; default the current
    one); where: how errors name the list (the CLI flag, or the recipe and its key)."""
    from workbench.eval.suites import find_suite, load_suite

    items: list[EvalItem] = []
    for ref in refs:
        path = Path(ref)
        if relative_to is not None and not path.is_absolute() and (
                path.suffix in (".jsonl", ".yaml", ".yml") or (relative_to / path).exists()):
            path = relative_to / path
        if path.suffix == ".jsonl":
            if not path.is_file():
                raise BadInput(f"{where} {ref}: no such file ({path})")
            items += file_items(path)
            continue
        if path.suffix in (".yaml", ".yml") and not path.exists():
            raise BadInput(f"{where} {ref}: no such suite file ({path})")
        try:
            suite_path = find_suite(str(path), evals_dir)
        except BadInput:
            items += task_items(ref, data_dir, where)
            continue
        suite = load_suite(str(suite_path), evals_dir=evals_dir)
        for task, task_items_ in suite.items.items():
            texts = without_shared_instruction([chat_item_text(it) for it in task_items_])
            items += [EvalItem(f"{suite.config.name}/{task}:{it['id']}", text) for it, text in zip(task_items_, texts)]
        for spec in suite.config.harness:
            for name in spec.tasks:
                items += task_items(name, data_dir, where)
    return items

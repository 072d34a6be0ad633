"""Recorded answers scored without a model (`wb eval --outputs FILE.jsonl --suite S`).

One answer set per line: `{"id": ITEM, "output": TEXT}`, where a multi-turn item (MT-Bench) takes a list of
answers, one per turn; or FastChat's answer-file format, `{"question_id": ID, "choices": [{"turns": [...]}]}`.
A suite of several tasks needs `"task": NAME` on each line. Every line names an item of the suite and every item
gets its answers, so the run scores exactly what was recorded; the run's manifest names the file and its sha256
instead of a checkpoint."""

from pathlib import Path

from workbench.data.records import sha256_file
from workbench.errors import BadInput
from workbench.eval.suites import LoadedSuite
from workbench.system.user_files import json_lines


def _answers(row: dict, where: str) -> list[str]:
    if "choices" in row and "output" not in row:
        choices = row["choices"]
        turns = choices[0].get("turns") if isinstance(choices, list) and choices and isinstance(choices[0], dict) \
            else None
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise BadInput(f"{where}: choices: expected FastChat's [{{\"turns\": [answer, ...]}}]")
        return turns
    output = row.get("output")
    if isinstance(output, str):
        return [output]
    if isinstance(output, list) and output and all(isinstance(t, str) for t in output):
        return output
    raise BadInput(f"{where}: output: expected the answer (a string) or the answers per turn (a list of strings)")


def load_outputs(path: Path, suite: LoadedSuite, limit: int | None = None) -> dict[str, dict[str, list[str]]]:
    """task -> item id -> the recorded answers (one per turn), checked against the suite's items: every line
    names one of them, and each of the first `limit` items of every task (all without a limit) has answers."""
    tasks = {t.name: t for t in suite.config.tasks}
    if not tasks:
        raise BadInput(f"--outputs: suite '{suite.config.name}' has no tasks to score answers of")
    expected = {name: {it["id"]: 1 + len(it.get("followups") or []) for it in suite.items[name]} for name in tasks}
    found: dict[str, dict[str, list[str]]] = {name: {} for name in tasks}
    for _, where, row in json_lines(path):
        if not isinstance(row, dict):
            raise BadInput(f"{where}: expected a JSON object with 'id' and 'output'")
        key = "id" if "id" in row else "question_id"
        if not isinstance(row.get(key), (str, int)) or isinstance(row.get(key), bool):
            raise BadInput(f"{where}: needs 'id' (or FastChat's 'question_id'): the item the answer is for")
        task = row.get("task")
        if task is None:
            if len(tasks) > 1:
                raise BadInput(f"{where}: needs 'task': suite '{suite.config.name}' has the tasks "
                               f"{', '.join(tasks)}")
            task = next(iter(tasks))
        if task not in tasks:
            raise BadInput(f"{where}: task '{task}' is not a task of suite '{suite.config.name}'")
        item_id = str(row[key])
        if item_id not in expected[task]:
            raise BadInput(f"{where}: id '{item_id}' is not an item of task '{task}'")
        if item_id in found[task]:
            raise BadInput(f"{where}: a second answer for item '{item_id}' of task '{task}'")
        answers = _answers(row, where)
        if len(answers) != expected[task][item_id]:
            raise BadInput(f"{where}: item '{item_id}' of task '{task}' has {expected[task][item_id]} turn(s); "
                           f"the line gives {len(answers)} answer(s)")
        found[task][item_id] = answers
    for task, ids in expected.items():
        missing = [i for i in list(ids)[:limit] if i not in found[task]]
        if missing:
            raise BadInput(f"{path}: no answer for item '{missing[0]}' of task '{task}'"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return found


def limited(suite: LoadedSuite, limit: int | None) -> LoadedSuite:
    """The suite with at most `limit` items per task (in place): --limit after the answers were checked against
    every item."""
    if limit is not None:
        for name in suite.items:
            suite.items[name] = suite.items[name][:limit]
            kept = {it["id"] for it in suite.items[name]}
            if name in suite.gold:
                suite.gold[name] = [g for g in suite.gold[name] if g["id"] in kept]
    return suite


def outputs_source(path: Path) -> dict:
    """What the run's manifest says instead of a checkpoint."""
    sha = sha256_file(path)
    return {"file": {"path": str(path.resolve()), "sha256": sha},
            "checkpoint": {"name": path.name, "kind": "outputs", "format": "jsonl", "sha": sha,
                           "path": str(path.resolve())}}

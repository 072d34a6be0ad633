"""Finding and validating eval suites (evals/suites/*.yaml, or a path)."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from workbench.config import BENCHMARKS, JUDGE_SCORERS, FewshotPair, SuiteConfig, TaskSpec, load_yaml_model
from workbench.data.records import load_chat_items, sha256_file
from workbench.errors import BadInput
from workbench.eval.scorers import BadReturn, Sample, expected_calls, load_function, python_values, resolve_function
from workbench.system.content import content_dir
from workbench.system.extras import require
from workbench.system.home import data_dir as resolve_data_dir
from workbench.system.user_files import json_lines, load_json, resolved


@dataclass
class LoadedSuite:
    config: SuiteConfig
    path: Path
    sha: str
    items: dict[str, list[dict]]  # task name -> validated chat items (limit applied)
    gold: dict[str, list[dict]] = field(default_factory=dict)  # task name -> human-graded answers
    # task name -> python scorer label -> the metric names its first call returned (None: that call raised)
    python_metrics: dict[str, dict[str, list[str] | None]] = field(default_factory=dict)

    @property
    def uses_judge(self) -> bool:
        return any(s.type in JUDGE_SCORERS for t in self.config.tasks for s in t.scorers)

    def metric_names(self) -> dict[str, list[str] | None]:
        """task -> the names of the metrics its run will report (before breakdowns); None where a python scorer's
        names are not known before the run."""
        out = {}
        for task in self.config.tasks:
            names = []
            for spec in task.scorers:
                found = self.python_metrics.get(task.name, {}).get(spec.label, [spec.label])
                if spec.type in BENCHMARKS:
                    from workbench.benchmarks import metric_names

                    found = metric_names(spec.type, spec.label)
                if found is None:
                    names = None
                    break
                names += found
            out[task.name] = names and names + [f"{m}.pass@{k}" for m in names for k in task.pass_at]
        return out

    def tags(self) -> dict[str, set[str]]:
        """task -> the tags its (limited) items carry."""
        return {name: {t for it in items for t in it["tags"]} for name, items in self.items.items()}


def task_messages(task: TaskSpec, messages: list[dict]) -> list[dict]:
    """An item's conversation as the checkpoint gets it: the task's system prompt (unless the item has its own),
    its few-shot turns, then the item's messages."""
    head = []
    own_system = bool(messages) and messages[0]["role"] == "system"
    if task.system is not None and not own_system:
        head.append({"role": "system", "content": task.system})
    for turn in task.fewshot:
        if isinstance(turn, FewshotPair):
            head += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.assistant}]
        else:
            head.append(turn.model_dump())
    if own_system and head:
        return [messages[0], *head, *messages[1:]]
    return head + messages


def find_suite(ref: str, evals_dir: str | None = None) -> Path:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists() or path.is_symlink():
        if not path.exists() and not path.is_symlink():  # a symlink loop is named as one when read
            raise BadInput(f"suite file '{ref}': no such file")
        return path
    folder = content_dir("evals", evals_dir) / "suites"
    for candidate in (folder / f"{ref}.yaml", folder / f"{ref}.yml"):
        if candidate.exists():
            return candidate
    known = sorted(p.stem for p in folder.glob("*.y*ml"))
    raise BadInput(f"suite '{ref}': not found in {folder} (known: {', '.join(known) or 'none'})")


def load_suite(ref: str, *, evals_dir: str | None = None, limit: int | None = None,
               data_dir: str | Path | None = None) -> LoadedSuite:
    """Parse the suite and every task's data now, so bad input fails before any model loads. A `benchmark:` task's
    items come from the data mirror (`data_dir`, else WB_DATA_DIR)."""
    path = find_suite(ref, evals_dir)
    config = load_yaml_model(path, SuiteConfig)
    if not config.tasks and not config.harness:
        raise BadInput(f"{path}: a suite needs 'tasks', 'harness' or both")
    names = [t.name for t in config.tasks]
    if len(set(names)) != len(names):
        raise BadInput(f"{path}: tasks: duplicate task names")
    items, gold, python_metrics = {}, {}, {}
    for ti, task in enumerate(config.tasks):
        if task.benchmark is not None:
            from workbench.benchmarks import load_items

            loaded = load_items(task.benchmark, resolve_data_dir(data_dir))
        elif task.format == "bfcl":
            from workbench.toolcalls.bfcl_data import load_bfcl_items

            loaded = load_bfcl_items(resolved(path.parent / task.data))
        else:
            loaded = load_chat_items(resolved(path.parent / task.data))
        cap = min(x for x in (limit, task.limit, len(loaded)) if x is not None)
        items[task.name] = loaded[:cap]
        for si, spec in enumerate(task.scorers):
            if spec.type == "json_schema":
                spec.json_schema = _load_schema(path, f"tasks.{ti}.scorers.{si}.json_schema", spec.json_schema)
            if spec.type == "python":
                found = _load_python(path, f"tasks.{ti}.scorers.{si}.function", task, spec, items[task.name][0])
                python_metrics.setdefault(task.name, {})[spec.label] = found
            if spec.type == "tool_call":
                for item in loaded:
                    try:
                        expected_calls(item)
                    except ValueError as exc:
                        raise BadInput(f"{path}: tasks.{ti}: task '{task.name}', item '{item['id']}': {exc}") from None
            if spec.type == "regex":
                try:
                    re.compile(spec.pattern)
                except re.error as exc:
                    raise BadInput(f"{path}: tasks.{ti}.scorers.{si}.pattern: task '{task.name}': regex "
                                   f"{spec.pattern!r} does not compile: {exc}") from None
        if task.gold:
            judged = [s for s in task.scorers if s.type == "judge"]
            if not judged:
                raise BadInput(f"{path}: tasks.{ti}.gold: human labels need a 'judge' scorer to compare with")
            rows = _load_gold(path.parent / task.gold, {it["id"] for it in loaded}, judged[0].scale)
            kept = {it["id"] for it in items[task.name]}  # --limit limits the gold set to the same items
            gold[task.name] = [g for g in rows if g["id"] in kept]
    for ti, task in enumerate(config.tasks):
        for key in task.breakdown:
            if not any(isinstance(it["metadata"], dict) and key in it["metadata"] for it in items[task.name]):
                raise BadInput(f"{path}: tasks.{ti}.breakdown: no item of task '{task.name}' has metadata key "
                               f"'{key}'")
    return LoadedSuite(config=config, path=path.resolve(), sha=sha256_file(path), items=items, gold=gold,
                       python_metrics=python_metrics)


def _load_python(suite_path: Path, key: str, task: TaskSpec, spec, item: dict) -> list[str] | None:
    """Import a python scorer's function (spec.function is made absolute) and call it once on `item` with its
    reference as the output: a function that cannot be imported, or returns no score, fails here, before any
    model loads. Its metric names, or None when that call raised (the run records such errors per sample)."""
    spec.function = resolve_function(spec.function, suite_path.parent)
    try:
        load_function(spec.function)
    except BadInput as exc:
        raise BadInput(f"{suite_path}: {key}: {exc}") from None
    reference = item["reference"]
    probe = Sample(id=item["id"], messages=task_messages(task, item["messages"]),
                   output=reference if isinstance(reference, str) else json.dumps(reference),
                   reference=reference, metadata=item["metadata"], tags=item["tags"], task=task.model_dump())
    try:
        return list(python_values(spec, probe).values)
    except BadReturn as exc:
        raise BadInput(f"{suite_path}: {key}: scorer '{spec.label}' {exc}") from None
    except Exception:  # noqa: BLE001  (the user's code may fail on this answer: the run records such failures)
        return None


def _load_schema(suite_path: Path, key: str, value) -> dict:
    """An inline schema, or a JSON file relative to the suite; checked against its metaschema now."""
    jsonschema = require("jsonschema", "The json_schema scorer", "eval")
    if isinstance(value, str):
        file = resolved(suite_path.parent / value)
        if not file.exists():
            raise BadInput(f"{suite_path}: {key}: no such file {file}")
        value = load_json(file, "a JSON schema")
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        raise BadInput(f"{suite_path}: {key}: not a valid JSON schema: {exc.message}") from None
    return value


def _load_gold(path: Path, ids: set, scale: tuple[int, int]) -> list[dict]:
    """Rows {id, answer, score}: a person's grade of a fixed answer to the task item `id`."""
    rows = []
    for n, _, row in json_lines(path):
        if isinstance(row, dict) and "id" in row:
            row["id"] = str(row["id"])
        if not isinstance(row, dict) or not isinstance(row.get("answer"), str) or row.get("id") not in ids:
            raise BadInput(f"{path}:{n}: needs 'id' (an item of the task's data) and 'answer' (text)")
        if not isinstance(row.get("score"), int) or not scale[0] <= row["score"] <= scale[1]:
            raise BadInput(f"{path}:{n}: score: an integer in {scale[0]}..{scale[1]}")
        rows.append(row)
    if not rows:
        raise BadInput(f"gold set '{path}': empty")
    return rows

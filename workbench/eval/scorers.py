"""Task scorers: each maps (output, reference) to a score in [0, 1] for one sample; what each type does is
written once, in config.SCORER_TYPES (the reference docs show it). A `python` scorer is the user's own function,
imported here and called on a `Sample`; what it may return is checked here (`python_values`)."""

import asyncio
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import numbers
import re
import string
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from workbench.config import ScorerSpec
from workbench.errors import BadInput
from workbench.system.extras import require

_PUNCT = str.maketrans("", "", string.punctuation)


def _normalize(text: str) -> str:
    return " ".join(text.lower().translate(_PUNCT).split())


def _parse_json_object(text: str):
    try:
        value = json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


_NUMBER = r"-?\d[\d,]*\.?\d*(?:[eE]-?\d+)?"


def _numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in re.findall(_NUMBER, text)]


def _whole_number(text: str) -> float | None:
    text = text.strip()
    return float(text.replace(",", "")) if re.fullmatch(_NUMBER, text) else None


def _extract_number(spec: ScorerSpec, output: str) -> float | None:
    """The output's number the numeric scorer compares, as `extract` says (config.SCORER_TYPES)."""
    if spec.extract == "whole":
        return _whole_number(output)
    if spec.extract == "regex":
        found = re.search(spec.pattern, output)
        if found is None:
            return None
        return _whole_number(found.group(1) if found.re.groups else found.group(0))
    numbers = _numbers(output)
    if not numbers:
        return None
    return numbers[0] if spec.extract == "first" else numbers[-1]


def _answers(reference) -> list[str]:
    """Acceptable answers: a list of strings is several (the best match counts), anything else is one."""
    if isinstance(reference, list) and reference and all(isinstance(r, str) for r in reference):
        return reference
    return [reference if isinstance(reference, str) else json.dumps(reference)]


def token_f1(output: str, reference) -> float:
    """SQuAD token F1 (lowercased, punctuation and articles removed, bag-of-tokens overlap), via torchmetrics."""
    squad = require("torchmetrics.functional.text", "The token_f1 scorer", "eval").squad
    answers = _answers(reference)
    result = squad({"prediction_text": output, "id": "0"},
                   {"answers": {"answer_start": [0] * len(answers), "text": answers}, "id": "0"})
    return float(result["f1"]) / 100


@lru_cache(maxsize=1)
def _rouge_l():
    rouge_scorer = require("rouge_score.rouge_scorer", "The rouge_l scorer", "eval")
    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(output: str, reference) -> float:
    """ROUGE-L F-measure (longest common subsequence of tokens), from Google's rouge-score package."""
    return max(_rouge_l().score(ans, output)["rougeL"].fmeasure for ans in _answers(reference))


def json_schema_valid(output: str, schema: dict) -> float:
    jsonschema = require("jsonschema", "The json_schema scorer", "eval")
    try:
        value = json.loads(output.strip())
    except (json.JSONDecodeError, ValueError):
        return 0.0
    return float(jsonschema.validators.validator_for(schema)(schema).is_valid(value))


def score(spec: ScorerSpec, output: str, reference) -> float:
    """Judge scorers are not here: they need an endpoint and run per task in workbench.judge.grading. A python
    scorer (its function resolved by load_suite) gives one value here: reward_value's."""
    kind = spec.type
    if kind == "python":
        return reward_value(python_values(spec, Sample(id="", messages=[], output=output, reference=reference)),
                            spec.label)
    if kind == "token_f1":
        return token_f1(output, reference)
    if kind == "rouge_l":
        return rouge_l(output, reference)
    if kind == "json_schema":
        return json_schema_valid(output, spec.json_schema)
    ref = reference if isinstance(reference, str) else json.dumps(reference)
    if kind == "exact":
        return float(output.strip() == ref.strip())
    if kind == "normalized_exact":
        return float(_normalize(output) == _normalize(ref))
    if kind == "contains":
        return float(_normalize(ref) in _normalize(output))
    if kind == "regex":
        if spec.match == "full":
            return float(re.fullmatch(spec.pattern, output.strip()) is not None)
        return float(re.search(spec.pattern, output) is not None)
    if kind == "json_valid":
        return float(_parse_json_object(output) is not None)
    if kind == "json_fields":
        # Fraction of the reference object's fields the output reproduces exactly (0 when not a JSON object).
        want, got = _parse_json_object(ref), _parse_json_object(output)
        if not want or got is None:
            return 0.0
        return sum(got.get(k) == v for k, v in want.items()) / len(want)
    if kind == "numeric":
        got = _extract_number(spec, output)
        want = _whole_number(ref)
        if want is None:
            want = (_numbers(ref) or [None])[-1]
        if got is None or want is None:
            return 0.0
        return float(math.isclose(got, want, rel_tol=0.0, abs_tol=spec.tolerance))
    raise ValueError(f"unknown scorer type {kind}")


# ---- tool calls ------------------------------------------------------------------------------------------------

TOOL_CALL_METRICS = ("", ".unparseable", ".wrong", ".no_call")


def expected_calls(item: dict) -> list[dict]:
    """A tool_call item's expected calls as BFCL possible answers; ValueError (what is wrong) when the item has no
    `tools`, no expected calls, or expects a function it does not declare."""
    tools = item.get("tools")
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ValueError("a tool_call item needs 'tools': a list of OpenAI function specs")
    if item.get("possible_answer") is not None:
        expected = item["possible_answer"]
        if not isinstance(expected, list) or not all(
                isinstance(a, dict) and len(a) == 1 and isinstance(next(iter(a.values())), dict) for a in expected):
            raise ValueError("possible_answer: expected [{FUNCTION: {PARAM: [allowed values]}}, ...]")
    else:
        reference = item.get("reference")
        if not isinstance(reference, list) or not all(
                isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("arguments", {}), dict)
                for r in reference):
            raise ValueError("reference: a tool_call item expects [{\"name\": ..., \"arguments\": {...}}, ...] ([]: "
                             "no call), or 'possible_answer'")
        from workbench.toolcalls.bfcl import expected_from_reference

        expected = expected_from_reference(reference)
    declared = {t.get("function", t).get("name") for t in item.get("functions") or tools}
    missing = [name for a in expected for name in a if name not in declared]
    if missing:
        raise ValueError(f"expects a call to '{missing[0]}', which its tools do not declare")
    return expected


def tool_call_values(spec: ScorerSpec, item: dict, output: str, syntax: str = "") -> "Scored":
    """The tool_call scorer on one output: LABEL (1 correct), LABEL.unparseable, LABEL.wrong, LABEL.no_call (each
    1 or 0); the explanation is the verdict and its reason."""
    from workbench.toolcalls.bfcl import check_calls
    from workbench.toolcalls.parse import parse_calls

    parsed = parse_calls(output, spec.tool_syntax or syntax)
    expected = expected_calls(item)
    if parsed.status == "unparseable":
        verdict, reason, correct = "unparseable", parsed.error, False
    else:
        judged = check_calls(parsed.calls, item.get("functions") or item["tools"], expected,
                             item.get("language") or "python")
        correct = judged.correct
        verdict = "correct" if correct else ("no_call" if parsed.status == "no_call" else "wrong")
        reason = judged.reason or ("no call expected, none made" if not expected else "")
    values = {spec.label: float(correct), f"{spec.label}.unparseable": float(verdict == "unparseable"),
              f"{spec.label}.wrong": float(verdict == "wrong"), f"{spec.label}.no_call": float(verdict == "no_call")}
    return Scored(values, f"{verdict}: {reason}" if reason else verdict)


# ---- python scorers: the user's own function ------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """What a `type: python` scorer's function is called with: one answer to one item."""

    id: str
    messages: list  # the conversation as sent: the task's system prompt and few-shot turns, then the item's
    output: str
    reference: Any
    metadata: Any = None  # the item's "metadata", any JSON (None when it has none)
    tags: list = field(default_factory=list)  # the item's "tags"
    task: dict = field(default_factory=dict)  # the task's settings as the suite gives them (name, generation, ...)


@dataclass
class Scored:
    values: dict[str, float]  # metric name -> value
    explanation: str | None = None


class BadReturn(TypeError):
    """A python scorer returned something that is not a score."""


EXPECTED = "a number, a bool, or {'values': {NAME: number, ...}, 'explanation': text}"


def resolve_function(ref: str, base: Path) -> str:
    """`file.py:function` with the file made absolute (relative to `base`, the suite's folder); `module:function`
    as it is."""
    target, _, name = ref.rpartition(":")
    if target.endswith(".py"):
        return f"{(base / target).resolve()}:{name}"
    return ref


def load_function(ref: str):
    """The function `ref` (as resolve_function gives it) names, imported (which runs the module's code); BadInput
    when the file or module does not exist, does not import, or has no such function."""
    target, _, name = ref.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise BadInput(f"no such file {path}")
        stat = path.stat()
        module = _import_file(str(path), stat.st_mtime_ns, stat.st_size)
    else:
        module = _import_module(target)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise BadInput(f"{target} has no function '{name}'")
    return fn


def function_source_sha(ref: str) -> str | None:
    """The sha256 of the file a scorer function (as resolve_function gives it) is defined in: a recorded run is
    identified by it (workbench.eval.reuse), since editing the scorer changes the scores. None when not found."""
    target, _, _ = ref.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
    else:
        try:
            spec = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            return None
        path = Path(spec.origin) if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=64)
def _import_file(path: str, mtime_ns: int, size: int):
    # Keyed by the file's mtime and size: a scorer edited between two evaluations in one process is imported anew.
    name = "wb_scorer_" + hashlib.sha256(f"{path}:{mtime_ns}".encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up there
    try:
        with _no_bytecode():
            spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001  (whatever the user's module raises when imported)
        del sys.modules[name]
        raise BadInput(f"importing {path} raised {type(exc).__name__}: {exc}") from None
    return module


def _import_module(target: str):
    try:
        with _no_bytecode():
            return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise BadInput(f"no module '{exc.name}' (importing {target})") from None
    except Exception as exc:  # noqa: BLE001  (whatever the user's module raises when imported)
        raise BadInput(f"importing {target} raised {type(exc).__name__}: {exc}") from None


class _no_bytecode:
    """Importing the user's scorer writes no __pycache__ beside it."""

    def __enter__(self):
        self.saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True

    def __exit__(self, *exc):
        sys.dont_write_bytecode = self.saved


def _number(value) -> float | None:
    if isinstance(value, (bool, numbers.Real)) and not isinstance(value, str):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def python_values(spec: ScorerSpec, sample: Sample) -> Scored:
    """Call the scorer's function on `sample` (awaited when it is async). Its exceptions propagate; a return value
    that is not a score is a BadReturn. A number or bool is the metric LABEL; named values are LABEL.NAME each."""
    result = load_function(spec.function)(sample)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    number = _number(result)
    if number is not None:
        return Scored({spec.label: number})
    if isinstance(result, dict) and isinstance(result.get("values"), dict) and result["values"] \
            and set(result) <= {"values", "explanation"}:
        values = {f"{spec.label}.{k}": _number(v) for k, v in result["values"].items()}
        explanation = result.get("explanation")
        if all(isinstance(k, str) and k for k in result["values"]) and None not in values.values() \
                and (explanation is None or isinstance(explanation, str)):
            return Scored(values, explanation)
    shown = repr(result) if len(repr(result)) <= 60 else repr(result)[:57] + "..."
    raise BadReturn(f"returned {type(result).__name__} {shown}; expected {EXPECTED} (finite numbers)")


async def _awaited(awaitable):
    return await awaitable


def reward_value(scored: Scored, label: str) -> float:
    """A python scorer's value as a GRPO reward: its `reward` value, else its first one."""
    return scored.values.get(f"{label}.reward", next(iter(scored.values.values())))

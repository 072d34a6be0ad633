"""Task scorers: each maps (output, reference) to a score in [0, 1] for one sample; what each type does is
written once, in config.SCORER_TYPES (the reference docs show it)."""

import json
import math
import re
import string
from functools import lru_cache

from workbench.config import ScorerSpec
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
    """Judge scorers are not here: they need an endpoint and run per task in workbench.judge.grading."""
    kind = spec.type
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

"""Task scorers: each maps (output, reference) to a score in [0, 1] for one sample."""

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


def _numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in re.findall(r"-?\d[\d,]*\.?\d*(?:[eE]-?\d+)?", text)]


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
        return float(re.search(spec.pattern or "", output) is not None)
    if kind == "json_valid":
        return float(_parse_json_object(output) is not None)
    if kind == "json_fields":
        # Fraction of the reference object's fields the output reproduces exactly (0 when not a JSON object).
        want, got = _parse_json_object(ref), _parse_json_object(output)
        if not want or got is None:
            return 0.0
        return sum(got.get(k) == v for k, v in want.items()) / len(want)
    if kind == "numeric":
        got, want = _numbers(output), _numbers(ref)
        if not got or not want:
            return 0.0
        return float(math.isclose(got[-1], want[-1], rel_tol=0.0, abs_tol=spec.tolerance))
    raise ValueError(f"unknown scorer type {kind}")

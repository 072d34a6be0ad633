"""Task scorers: each maps (output, reference) to a score in [0, 1] for one sample."""

import json
import math
import re
import string

from workbench.config import ScorerSpec

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


def score(spec: ScorerSpec, output: str, reference) -> float:
    ref = reference if isinstance(reference, str) else json.dumps(reference)
    kind = spec.type
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

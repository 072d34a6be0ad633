import pytest

from workbench.config import ScorerSpec
from workbench.eval.runner import mean_stderr
from workbench.eval.scorers import score

REF = '{"name": "Ana Silva", "age": 31, "city": "Porto", "email": "ana@example.org"}'


@pytest.mark.parametrize("kind,output,expected", [
    ("exact", REF, 1.0),
    ("exact", "JSON: " + REF, 0.0),
    ("json_valid", '{"a": 1}', 1.0),
    ("json_valid", "[1, 2]", 0.0),
    ("json_valid", "{not json", 0.0),
    ("json_fields", '{"name": "Ana Silva", "age": 31, "city": "Lisbon", "email": "x"}', 0.5),
    ("json_fields", "no json here", 0.0),
    ("normalized_exact", "  ana SILVA! ", 1.0),
    ("contains", "The answer is Ana Silva.", 1.0),
])
def test_scorers(kind, output, expected):
    ref = "Ana Silva" if kind in ("normalized_exact", "contains") else REF
    assert score(ScorerSpec(type=kind), output, ref) == expected


def test_numeric_and_regex():
    assert score(ScorerSpec(type="numeric", tolerance=0.01), "so it is 1,234.005", "#### 1234") == 1.0
    assert score(ScorerSpec(type="numeric"), "12", "13") == 0.0
    assert score(ScorerSpec(type="regex", pattern=r"^\{.*\}$"), REF, "") == 1.0


def test_mean_stderr_matches_sample_formula():
    mean, se = mean_stderr([1.0, 0.0, 1.0, 1.0])
    assert mean == 0.75
    assert se == pytest.approx((0.25 / 4) ** 0.5)

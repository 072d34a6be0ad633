import json

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


# The new user's date task: the wrong answer "2025-12-26: 10:10 AM" against "2025-12-26T11:30". Its last number
# (10) is not the reference's last (30), but `last` is also what made "the answer is 7, not 8" score against 8.
@pytest.mark.parametrize("extract,output,reference,expected", [
    ("last", "the answer is 7, not 8", "8", 1.0),
    ("first", "the answer is 7, not 8", "8", 0.0),
    ("first", "the answer is 7, not 8", "7", 1.0),
    ("whole", "7", "7", 1.0),
    ("whole", " 1,234 ", "1234", 1.0),
    ("whole", "7 apples", "7", 0.0),
    ("last", "no number", "7", 0.0),
    ("last", "7", "#### 7 items", 1.0),  # a reference that is not one number: its last number
])
def test_numeric_extract(extract, output, reference, expected):
    assert score(ScorerSpec(type="numeric", extract=extract), output, reference) == expected


def test_numeric_regex_extract_and_tolerance():
    spec = ScorerSpec(type="numeric", extract="regex", pattern=r"answer:\s*(\S+)", tolerance=0.5)
    assert score(spec, "step 1: 3\nanswer: 41.6 (rounded)", "42") == 1.0
    assert score(spec, "step 1: 42\nanswer: 40", "42") == 0.0
    assert score(spec, "42, no answer line", "42") == 0.0
    assert score(spec, "answer: forty-two", "42") == 0.0  # the group must be a number
    whole_match = ScorerSpec(type="numeric", extract="regex", pattern=r"-?\d+(?= dollars)")
    assert score(whole_match, "it costs 12 dollars, 3 cents", "12") == 1.0


def test_numeric_regex_extract_needs_a_pattern():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="extract: regex needs 'pattern'"):
        ScorerSpec(type="numeric", extract="regex")


@pytest.mark.parametrize("match,output,expected", [
    ("search", "Date: 2025-12-26T11:30", 1.0),
    ("full", "Date: 2025-12-26T11:30", 0.0),
    ("full", "  2025-12-26T11:30\n", 1.0),  # the output stripped of surrounding whitespace
    ("full", "2025-12-26T11:30 and more", 0.0),
])
def test_regex_match_mode(match, output, expected):
    spec = ScorerSpec(type="regex", pattern=r"\d{4}-\d\d-\d\dT\d\d:\d\d", match=match)
    assert score(spec, output, "") == expected


def test_numeric_and_regex():
    assert score(ScorerSpec(type="numeric", tolerance=0.01), "so it is 1,234.005", "#### 1234") == 1.0
    assert score(ScorerSpec(type="numeric"), "12", "13") == 0.0
    assert score(ScorerSpec(type="regex", pattern=r"^\{.*\}$"), REF, "") == 1.0


def test_mean_stderr_matches_sample_formula():
    mean, se = mean_stderr([1.0, 0.0, 1.0, 1.0])
    assert mean == 0.75
    assert se == pytest.approx((0.25 / 4) ** 0.5)


# ---- library-backed scorers: token F1 (torchmetrics' SQuAD), ROUGE-L (rouge-score), JSON schema (jsonschema) ----

def test_token_f1_is_squad_f1():
    # SQuAD normalization drops case, punctuation and articles; F1 over the bag of remaining tokens:
    # "cat sat" vs "cat sat down": precision 2/2, recall 2/3 -> F1 0.8.
    assert score(ScorerSpec(type="token_f1"), "The cat sat!", "a cat sat down") == pytest.approx(0.8)
    # Several acceptable answers: the best one counts.
    assert score(ScorerSpec(type="token_f1"), "Paris", ["Lyon", "paris"]) == 1.0
    assert score(ScorerSpec(type="token_f1"), "no overlap", "something else") == 0.0


def test_rouge_l_is_lcs_f_measure():
    # LCS of "the cat sat on the mat" and "the cat was on the mat" is 5 tokens (the cat on the mat): P = R = 5/6.
    assert score(ScorerSpec(type="rouge_l"), "the cat sat on the mat", "the cat was on the mat") == pytest.approx(5 / 6)
    assert score(ScorerSpec(type="rouge_l"), "identical words", "Identical words.") == 1.0


def test_json_schema_scorer_and_suite_checks(tmp_path):
    from workbench.errors import BadInput
    from workbench.eval.suites import load_suite

    schema = {"type": "object", "required": ["name", "age"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}
    spec = ScorerSpec(type="json_schema", json_schema=schema)
    assert score(spec, '{"name": "Ana", "age": 31}', None) == 1.0
    assert score(spec, '{"name": "Ana", "age": -1}', None) == 0.0
    assert score(spec, '{"name": "Ana"}', None) == 0.0
    assert score(spec, "not json", None) == 0.0

    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "reference": "r"}\n')
    (tmp_path / "s.json").write_text(json.dumps(schema))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ntasks:\n  - name: t\n    data: d.jsonl\n"
                     "    scorers: [{type: json_schema, json_schema: s.json}]\n")
    assert load_suite(str(suite)).config.tasks[0].scorers[0].json_schema == schema  # read in, relative to the suite
    (tmp_path / "s.json").write_text('{"type": "no-such-type"}')
    with pytest.raises(BadInput, match=r"tasks\.0\.scorers\.0\.json_schema: not a valid JSON schema"):
        load_suite(str(suite))

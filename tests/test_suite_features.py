"""A suite as a user writes one (issue 29, items 2 and 4): a `type: python` scorer with partial credit as named
values, items tagged seen/heldout, a task system prompt and few-shot turns, a gate on a tag, and pass@k over n
sampled answers; the reference doc describes every key the suite uses. Bad input (a scorer that does not import or
returns no score, n: 0, k > n, a gate on a tag no item has) is refused by the hostile_support contract."""

import json
import math
import re
from pathlib import Path

import pytest
import yaml
from hostile_support import check_case, run_cli, workspace  # noqa: F401  (fixture)

from workbench.eval.runner import pass_at_k

REPO = Path(__file__).resolve().parent.parent

SCORER = '''
import re


def when(sample):
    """Partial credit: the date and the hour of an ISO 8601 answer, scored apart."""
    date = re.search(r"\\d{4}-\\d{2}-\\d{2}", sample.output)
    hour = re.search(r"T(\\d{2}):", sample.output)
    return {"values": {"date": float(bool(date) and date.group(0) == sample.reference[:10]),
                       "hour": float(bool(hour) and hour.group(1) == sample.reference[11:13])},
            "explanation": f"date {date and date.group(0)}, hour {hour and hour.group(1)}"}


async def held_out_fails(sample):
    """Raises on held-out items (recorded per sample, not a crash); True elsewhere."""
    if "heldout" in sample.tags and sample.output != sample.reference:
        raise ValueError("no luck on held-out items")
    return True


def digits(sample):
    return any(c.isdigit() for c in sample.output)


def text(sample):
    return "not a score"
'''

ROWS = [("Meeting on March 3 2025 at 10am", "2025-03-03T10:00", ["seen"]),
        ("Lunch on 2025-04-01 at noon", "2025-04-01T12:00", ["seen"]),
        ("Call on Jan 5 2026 at 9:30", "2026-01-05T09:30", ["heldout"]),
        ("Review on Feb 2 2025, 3pm", "2025-02-02T15:00", ["heldout", "pm"])]

SUITE = """\
name: meetings
tasks:
  - name: when
    data: items.jsonl
    system: Answer with one ISO 8601 date-time (YYYY-MM-DDTHH:MM) and nothing else.
    fewshot:
      - {user: "Standup on 2024-06-01 at 9am", assistant: "2024-06-01T09:00"}
      - {user: "Dinner on July 4 2024 at 7pm", assistant: "2024-07-04T19:00"}
    breakdown: [template]
    generation: {max_new_tokens: 16}
    scorers:
      - {type: python, name: when, function: "scorers.py:when"}
      - {type: python, name: lucky, function: "scorers.py:held_out_fails"}
gates:
  - {task: when, metric: when.date, tag: heldout, min_value: 0.0}
  - {task: when, metric: when.hour, tag: seen, max_value: -1.0, name: impossible-on-seen}
"""


def _write_suite(folder: Path, suite: str = SUITE) -> Path:
    (folder / "scorers.py").write_text(SCORER)
    with open(folder / "items.jsonl", "w") as fh:
        fh.writelines(json.dumps({"id": f"m{i}", "prompt": prompt, "reference": reference, "tags": tags,
                                  "metadata": {"template": "iso" if "-" in prompt else "words"}}) + "\n"
                      for i, (prompt, reference, tags) in enumerate(ROWS))
    path = folder / "suite.yaml"
    path.write_text(suite)
    return path


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _mean(values):
    return sum(values) / len(values)


def test_a_recorded_run_is_identified_by_its_python_scorers_source(tmp_path, tiny_model_dir):
    """--matrix reuses a run only when its identity is equal: editing the scorer's file changes it."""
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.eval.reuse import identity
    from workbench.eval.suites import load_suite

    path = _write_suite(tmp_path)
    ckpt = resolve_checkpoint(str(tiny_model_dir))

    def ident():
        return identity(ckpt, load_suite(str(path)), limit=None, run_options={}, plans=[])

    before = ident()
    assert set(before["scorer_files"]) == {f"{tmp_path / 'scorers.py'}:when",
                                           f"{tmp_path / 'scorers.py'}:held_out_fails"}
    assert ident() == before
    (tmp_path / "scorers.py").write_text(SCORER + "\n# edited\n")
    after = ident()
    assert after["scorer_files"] != before["scorer_files"] and after["suite_sha"] == before["suite_sha"]


# ---- pass@k: the estimator against hand-computed values --------------------------------------------------------

@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 2 / 5),  # pass@1 is the share of correct answers
    (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
    (5, 2, 3, 1 - 1 / 10),  # 1 - C(3,3)/C(5,3)
    (5, 2, 4, 1.0),  # n - c < k: every draw of 4 holds a correct one
    (5, 0, 3, 0.0),
    (10, 10, 10, 1.0),
    (4, 1, 2, 1 - 3 / 6),  # 1 - C(3,2)/C(4,2)
])
def test_pass_at_k_by_hand(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_where_the_binomials_are_huge():
    # C(1000, 400) has ~290 digits: the product form needs no big numbers and agrees with exact integer arithmetic.
    exact = 1 - math.comb(1000 - 37, 400) / math.comb(1000, 400)
    assert pass_at_k(1000, 37, 400) == pytest.approx(exact, rel=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


# ---- the new user's suite, end to end on the default model --------------------------------------------------------

def test_user_suite_end_to_end(tmp_path, monkeypatch, capsys):
    suite = _write_suite(tmp_path)
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    res = run_cli(["eval", "default", "--suite", suite, "--json"], capsys)
    assert res.code == 1, res.stderr  # the impossible gate on tag seen fails; the one on heldout passes
    out = json.loads(res.stdout)
    rows = {m["metric"]: m for m in out["metrics"]}
    run = Path(tmp_path / "store" / "runs" / out["run_id"])
    samples = [json.loads(line) for line in (run / "samples" / "when.jsonl").read_text().splitlines()]

    # System prompt and the two few-shot turns come before each item, and the manifest records them.
    for s, (prompt, _, tags) in zip(samples, ROWS):
        assert [m["role"] for m in s["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert s["messages"][0]["content"].startswith("Answer with one ISO 8601")
        assert s["messages"][1:3] == [{"role": "user", "content": "Standup on 2024-06-01 at 9am"},
                                      {"role": "assistant", "content": "2024-06-01T09:00"}]
        assert s["messages"][-1] == {"role": "user", "content": prompt}
        assert s["tags"] == tags and s["metadata"]["template"] in ("iso", "words")
    manifest = json.loads((run / "run.json").read_text())
    task = manifest["config"]["tasks"][0]
    assert task["system"].startswith("Answer with") and len(task["fewshot"]) == 2

    # Two named values, each a metric over every sample; the explanation is kept on the sample.
    for metric in ("when.date", "when.hour"):
        assert rows[metric]["value"] == pytest.approx(_mean([s["scores"][metric] for s in samples]))
        assert rows[metric]["n"] == 4 and rows[metric]["errors"] == 0
        for tag in ("seen", "heldout", "pm"):
            tagged = [s["scores"][metric] for s in samples if tag in s["tags"]]
            row = rows[f"{metric}[tag={tag}]"]
            assert row["breakdown"] == {"key": "tag", "value": tag}
            assert row["value"] == pytest.approx(_mean(tagged)) and row["n"] == len(tagged)
        for template in ("iso", "words"):
            grouped = [s["scores"][metric] for s in samples if s["metadata"]["template"] == template]
            row = rows[f"{metric}[template={template}]"]
            assert row["breakdown"] == {"key": "template", "value": template}
            assert row["value"] == pytest.approx(_mean(grouped))
    assert all(s["explanations"]["when"].startswith("date ") for s in samples)

    # A scorer that raises on a sample: recorded there and counted, the others scored.
    raised = [s for s in samples if "lucky" not in s["scores"]]
    assert all(s["errors"]["lucky"].startswith("ValueError: no luck") for s in raised)
    assert rows["lucky"]["errors"] == len(raised) and rows["lucky"]["n"] == 4 - len(raised)

    # The gates read the per-tag rows.
    gates = {g["gate"]: g for g in out["gate"]["results"]}
    held = gates["when/when.date[tag=heldout]"]
    assert held["status"] == "pass" and held["metric"] == "when.date[tag=heldout]"
    assert held["value"] == rows["when.date[tag=heldout]"]["value"]
    assert gates["impossible-on-seen"]["status"] == "fail"
    assert gates["impossible-on-seen"]["value"] == rows["when.hour[tag=seen]"]["value"]
    assert "impossible-on-seen" in res.stderr

    # wb compare pairs a per-tag metric on the samples carrying the tag.
    res = run_cli(["compare", out["run_id"], out["run_id"], "--json"], capsys)
    assert res.code == 0, res.stderr
    cmp_rows = {r["metric"]: r for r in json.loads(res.stdout)["rows"]}
    assert cmp_rows["when.date[tag=heldout]"]["n_a"] == 2 and cmp_rows["when.date[tag=heldout]"]["improved"] == 0

    # The reference doc describes every key the suite and its items use.
    reference = (REPO / "docs" / "reference" / "suite.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z_]+)` \|", reference, flags=re.MULTILINE))
    used = _keys(yaml.safe_load(suite.read_text()))
    assert used - documented == set(), used - documented
    for key in ("tags", "metadata"):  # the items' keys, in the `data` key's meaning
        assert f'"{key}"' in reference


def test_pass_at_k_through_the_runner(tmp_path, monkeypatch, capsys):
    """n sampled answers per item on the default model; pass@k from the recorded answers' pass/fail scores."""
    suite = _write_suite(tmp_path, """\
name: sampled
tasks:
  - name: when
    data: items.jsonl
    limit: 2
    generation: {max_new_tokens: 12, n: 4, temperature: 1.0, seed: 7}
    pass_at: [1, 2, 4]
    scorers:
      - {type: python, name: digits, function: "scorers.py:digits"}
      - {type: contains}
""")
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    res = run_cli(["eval", "default", "--suite", suite, "--json"], capsys)
    assert res.code == 0, res.stderr
    out = json.loads(res.stdout)
    rows = {m["metric"]: m for m in out["metrics"]}
    samples = [json.loads(line) for line in
               (tmp_path / "store" / "runs" / out["run_id"] / "samples" / "when.jsonl").read_text().splitlines()]
    assert len(samples) == 2
    for s in samples:
        assert len(s["outputs"]) == 4 and len(s["answers"]) == 4 and s["output"] == s["outputs"][0]
        assert len(set(s["outputs"])) > 1  # sampled with their own seeds, not four copies
    for metric in ("digits", "contains"):
        per_item = []
        for s in samples:
            correct = sum(a["scores"][metric] == 1.0 for a in s["answers"])
            assert s["scores"][metric] == pytest.approx(correct / 4)
            per_item.append({k: 1 - math.comb(4 - correct, k) / math.comb(4, k) for k in (1, 2, 4)})
        for k in (1, 2, 4):
            assert rows[f"{metric}.pass@{k}"]["value"] == pytest.approx(_mean([p[k] for p in per_item]))
        assert rows[f"{metric}.pass@1"]["value"] == pytest.approx(rows[metric]["value"])


# ---- bad input: one line, exit 3, nothing written ---------------------------------------------------------------

def _suite_case(scorer: str = "{type: exact}", gates: str = "", rows: str | None = None,
                generation: str = "{max_new_tokens: 4}", task: str = ""):
    def build(ws, g):
        ws.file("scorers.py", SCORER)
        ws.file("items.jsonl", rows if rows is not None else "".join(
            json.dumps({"id": str(i), "prompt": f"Say {i}", "reference": str(i), "tags": ["seen"],
                        "metadata": {"kind": "a"}}) + "\n" for i in range(3)))
        suite = ws.file("suite.yaml", f"name: bad\ntasks:\n  - name: say\n    data: items.jsonl\n"
                                      f"    generation: {generation}\n    scorers: [{scorer}]\n{task}{gates}")
        return ["eval", str(g("tiny_model_dir")), "--suite", suite]
    return build


BAD = {
    "scorer-file-missing": (_suite_case(scorer="{type: python, function: 'nope.py:score'}"), 3,
                            ("suite.yaml", "tasks.0.scorers.0.function", "no such file", "nope.py")),
    "scorer-function-missing": (_suite_case(scorer="{type: python, function: 'scorers.py:missing'}"), 3,
                                ("tasks.0.scorers.0.function", "has no function 'missing'")),
    "scorer-module-missing": (_suite_case(scorer="{type: python, function: 'no_such_module_xyz:score'}"), 3,
                              ("tasks.0.scorers.0.function", "no module 'no_such_module_xyz'")),
    "scorer-without-function": (_suite_case(scorer="{type: python, function: scorers.py}"), 3,
                                ("suite.yaml", "tasks.0.scorers.0", "module:function")),
    "scorer-returns-a-string": (_suite_case(scorer="{type: python, name: words, function: 'scorers.py:text'}"), 3,
                                ("tasks.0.scorers.0.function", "scorer 'words' returned str", "expected a number")),
    "n-zero": (_suite_case(generation="{n: 0, temperature: 0.8}"), 3,
               ("tasks.0.generation.n", "greater than or equal to 1")),
    "k-larger-than-n": (_suite_case(generation="{n: 2, temperature: 0.8}", task="    pass_at: [1, 5]\n"), 3,
        ("suite.yaml", "pass_at: k=5 is larger than generation.n=2")),
    "n-with-greedy-decoding": (_suite_case(generation="{n: 3}"), 3,
                               ("generation.n", "temperature > 0")),
    "gate-on-a-tag-no-item-has": (_suite_case(
        gates="gates:\n  - {task: say, metric: exact, tag: heldout, min_value: 0.5}\n"), 3,
        ("gate 'say/exact[tag=heldout]'", "tag: no item of task 'say' has tag 'heldout'", "seen")),
    "item-tags-not-a-list": (_suite_case(rows=json.dumps({"prompt": "x", "reference": "y", "tags": "seen"}) + "\n"),
                             3, ("items.jsonl:1", "tags")),
    "breakdown-key-no-item-has": (_suite_case(task="    breakdown: [template]\n"), 3,
                                  ("tasks.0.breakdown", "metadata key 'template'")),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_suite_input(name, workspace, request, capsys):  # noqa: F811  (fixture)
    check_case(BAD[name], workspace, request, capsys)

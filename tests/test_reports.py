import json

import pytest

from workbench.config import GateSpec
from workbench.gate.reports import append_github_summary, render_markdown, write_junit, write_reports
from workbench.gate.rules import evaluate_gates
from workbench.store import Store

junitparser = pytest.importorskip("junitparser", reason="needs the test extra (junitparser)")


def _run(store, name, scores):
    with store.open_run("eval", {"checkpoint": {"name": name}, "suite": "s"}) as run:
        run.write_samples("contacts", [{"id": f"q{i}", "scores": {"exact": s}} for i, s in enumerate(scores)])
        run.add_metric("contacts", "exact", sum(scores) / len(scores), n=len(scores), source="task")
    return store.load(run.run_id)


@pytest.fixture
def report(tmp_path):
    """Two gates on one regressed run: min_value passes, max_drop fails (20 regressions, no improvements)."""
    store = Store(tmp_path / "store")
    base = _run(store, "base", [1] * 80 + [0] * 20)
    new = _run(store, "tuned|v2", [0] * 20 + [1] * 60 + [0] * 20)  # 20 regressions, no improvements
    return evaluate_gates(new, base, [GateSpec(task="contacts", metric="exact", min_value=0.5),
                                      GateSpec(task="contacts", metric="exact", max_drop=0.05, name="no-regression")])


def test_junit_parses_with_junitparser(report, tmp_path):
    path = write_junit(report, tmp_path / "out" / "gate.xml")
    xml = junitparser.JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (2, 1, 0, 0)
    cases = {c.name: c for c in suite}
    assert set(cases) == {"contacts/exact", "no-regression"}
    assert cases["contacts/exact"].is_passed and cases["contacts/exact"].classname == "wb.gate.contacts"
    (failure,) = cases["no-regression"].result
    assert isinstance(failure, junitparser.Failure) and failure.type == "GateFailed"
    assert "dropped 0.2000" in failure.message and "more than max_drop 0.05" in failure.message
    props = {p.name: p.value for p in suite.properties()}
    assert props["run_id"] == report.run_id and props["baseline_checkpoint"] == "base"


def test_junit_marks_skipped_gates(tmp_path):
    store = Store(tmp_path)
    run = _run(store, "tuned", [1, 0])
    report = evaluate_gates(run, None, [GateSpec(task="contacts", metric="exact", max_drop=0.1)])
    path = write_junit(report, tmp_path / "gate.xml")
    (suite,) = list(junitparser.JUnitXml.fromfile(str(path)))
    assert (suite.tests, suite.failures, suite.skipped) == (1, 0, 1)
    (case,) = suite
    assert isinstance(case.result[0], junitparser.Skipped) and report.passed


def test_markdown_has_the_table_and_the_failures(report):
    md = render_markdown(report)
    assert md.startswith("## ❌ wb gate failed (1 of 2 gates)")
    assert "**tuned\\|v2**" in md  # pipes escaped: they would break the table
    assert "| | gate | value | baseline | Δ | n | test | p | CI of Δ | rule |" in md
    assert "| ✅ | contacts/exact | 0.6000 | 0.8000 | -0.2000 | 100 | McNemar (exact) |" in md
    assert "| ❌ | no-regression | 0.6000 | 0.8000 | -0.2000 | 100 | McNemar (exact) | 1.91e-06 |" in md
    assert "max_drop 0.05 (α=0.05) |" in md
    assert "**Failed**" in md and "- `no-regression`: dropped 0.2000" in md


def test_github_step_summary_is_appended(report, tmp_path, monkeypatch):
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert append_github_summary(render_markdown(report)) == summary
    text = summary.read_text()
    assert text.startswith("# earlier step\n\n## ❌ wb gate failed") and text.endswith("\n")


def test_no_step_summary_outside_actions(report, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_github_summary("x") is None


def test_write_reports_writes_every_format(report, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    written = write_reports(report, junit=tmp_path / "r/gate.xml", markdown=tmp_path / "r/gate.md",
                            json_path=tmp_path / "r/gate.json")
    assert written == [tmp_path / "r/gate.xml", tmp_path / "r/gate.md", tmp_path / "r/gate.json", summary]
    data = json.loads((tmp_path / "r/gate.json").read_text())
    assert data == json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False and [r["status"] for r in data["results"]] == ["pass", "fail"]
    assert data["results"][1]["test"] == "mcnemar-exact" and data["results"][1]["down"] == 20
    assert "\n" + (tmp_path / "r/gate.md").read_text() == summary.read_text() == "\n" + render_markdown(report)

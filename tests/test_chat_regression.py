"""The chat-regression suite (MT-Bench + AlpacaEval 2.0 + IFEval): it loads from the data mirror, and a candidate
that got worse than its base shows as paired deltas and fails `max_drop` gates like any metric: MT-Bench's per-
question ratings and AlpacaEval's per-instruction preferences through the paired bootstrap. The answers are
recorded (`wb eval --outputs`) and the judge is a loopback endpoint that prefers answers saying GOOD, so the
expected drops are known; IFEval's paired McNemar test is lm-eval's per-prompt pass/fail (tests/test_gate.py)."""

import json
import os
from pathlib import Path

import pytest
from hostile_support import Workspace, run_cli
from loopback import JsonHandler, serving, v1_url

from workbench.eval.suites import load_suite

MIRROR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
N = 8


@pytest.fixture(scope="module")
def mirror() -> Path:
    path = Path(os.environ.get("WB_DATA_DIR") or MIRROR)
    if not all((path / name).is_dir() for name in ("mt_bench", "alpaca_eval", "ifeval")):
        pytest.skip(f"needs the data mirror's mt_bench/, alpaca_eval/ and ifeval/ at {path} (set WB_DATA_DIR)")
    return path


def test_the_bundled_suite_reads_its_three_benchmarks_from_the_mirror(mirror):
    suite = load_suite("chat-regression", data_dir=mirror, limit=3)
    assert [t.name for t in suite.config.tasks] == ["mt_bench", "alpaca_eval"]
    assert [h.tasks for h in suite.config.harness] == [["ifeval"]]
    mt, alpaca = suite.items["mt_bench"], suite.items["alpaca_eval"]
    assert len(mt) == len(alpaca) == 3 and all(len(it["followups"]) == 1 for it in mt)
    assert suite.metric_names() == {"mt_bench": ["mt_bench", "mt_bench.turn1", "mt_bench.turn2"],
                                    "alpaca_eval": ["alpaca_eval.win_rate", "alpaca_eval.length_controlled_winrate"]}


class GoodJudge(JsonHandler):
    """MT-Bench (free text): [[9]] when the answer graded says GOOD, else [[4]]. Pairwise (a JSON verdict): the
    answer that says GOOD wins; neither or both: a tie."""

    def do_POST(self):
        body = self.body()
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if "response_format" in body or "grammar" in body:
            a, b = user.split("Answer A:\n", 1)[1].split("\n\nAnswer B:\n", 1)
            winner = "tie" if ("GOOD" in a) == ("GOOD" in b) else "A" if "GOOD" in a else "B"
            content = json.dumps({"rationale": "the one that says GOOD", "winner": winner})
        else:
            graded = user.rsplit("[The Start of Assistant", 1)[-1]
            content = f"Judged. Rating: [[{9 if 'GOOD' in graded else 4}]]"
        self.chat(content)


@pytest.fixture
def judge_url():
    with serving(GoodJudge) as server:
        yield v1_url(server)


@pytest.fixture
def ws(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path, monkeypatch)
    yield workspace
    workspace.close()


def _answers(ws: Workspace, name: str, suite, good: set[int]) -> Path:
    """Recorded answers: item i of each task says GOOD when i is in `good`."""
    lines = []
    for task, items in suite.items.items():
        for i, it in enumerate(items):
            word = "GOOD" if i in good else "meh"
            turns = [f"{word} answer {t}" for t in range(1 + len(it.get("followups") or []))]
            lines.append({"task": task, "id": it["id"], "output": turns if task == "mt_bench" else turns[0]})
    return ws.file(name, "".join(json.dumps(line) + "\n" for line in lines))


def test_a_worse_candidate_shows_paired_drops_and_fails_max_drop_gates(mirror, judge_url, ws, capsys):
    suite_file = ws.file("chat.yaml", f"""name: chat
judge: {{base_url: "{judge_url}", model: good-judge, concurrency: 4}}
tasks:
  - {{name: mt_bench, benchmark: mt_bench, scorers: [{{type: mt_bench}}]}}
  - {{name: alpaca_eval, benchmark: alpaca_eval, scorers: [{{type: alpaca_eval}}]}}
""")
    suite = load_suite(str(suite_file), data_dir=mirror, limit=N)
    base_answers = _answers(ws, "base.jsonl", suite, set(range(N)))
    worse_answers = _answers(ws, "worse.jsonl", suite, {0})
    common = ["--suite", suite_file, "--data-dir", mirror, "--limit", str(N), "--json"]
    base = run_cli(["eval", "--outputs", base_answers, *common], capsys)
    assert base.code == 0, base.stderr
    base_run = json.loads(base.stdout)["run_id"]
    gates = ws.file("g.yaml", """gates:
  - {task: mt_bench, metric: mt_bench, max_drop: 1.0}
  - {task: alpaca_eval, metric: alpaca_eval.win_rate, max_drop: 0.1}
""")
    report = ws.root / "gate.json"
    worse = run_cli(["eval", "--outputs", worse_answers, *common, "--baseline", base_run, "--gates", gates,
                     "--gate-json", report, "--allow-uncalibrated-judge"], capsys)
    assert worse.code == 1, worse.stderr  # gate failed
    metrics = {m["metric"]: m["value"] for m in json.loads(worse.stdout)["metrics"]}
    base_metrics = {m["metric"]: m["value"] for m in json.loads(base.stdout)["metrics"]}
    # base: every answer GOOD, so 9 on both turns and a win over every reference answer; the candidate: one of N
    assert base_metrics["mt_bench"] == 9 and base_metrics["alpaca_eval.win_rate"] == 1.0
    assert metrics["mt_bench"] == pytest.approx((9 + 4 * (N - 1)) / N)
    assert metrics["alpaca_eval.win_rate"] == pytest.approx((1 + 0.5 * (N - 1)) / N)
    gate_report = json.loads(report.read_text())
    results = {r["gate"]: r for r in gate_report["results"]}
    for name, drop in (("mt_bench/mt_bench", 5 * (N - 1) / N), ("alpaca_eval/alpaca_eval.win_rate", 0.5 * (N - 1) / N)):
        r = results[name]
        assert (r["status"], r["test"], r["n"], r["down"], r["up"]) == ("fail", "bootstrap", N, N - 1, 0), r
        assert r["delta"] == pytest.approx(-drop) and r["ci_high"] < 0
    # judge metrics gate only once calibrated against people: here allowed, and recorded as such
    assert all(p["calibrated"] is False and p["allowed_uncalibrated"] for p in gate_report["judge_policy"])

"""The LLM judge against a real HTTP server in a thread (http.server), scripted per question: the unit under
test (client, retries, cache, grading, records) is real; only the judge model behind the endpoint is scripted."""

import json
import logging
import re
import secrets
import socket
import time
from pathlib import Path

import pytest
from loopback import JsonHandler, serving, v1_url
from test_cli import wb

from workbench.config import JudgeSpec, ScorerSpec, TaskSpec
from workbench.judge.cache import JudgeCache
from workbench.judge.client import Endpoint, JudgeClient, JudgeFailure, parse_verdict
from workbench.judge.grading import combine_orders, judge_task
from workbench.judge.prompts import rubric_schema
from workbench.judge.reliability import gold_agreement, pairwise_reliability

RUBRIC = "5 = correct, 1 = wrong."


class ScriptedJudge(JsonHandler):
    """POST /v1/chat/completions. The behaviour comes from a MODE:<name> marker in the question."""

    calls: dict  # mode -> requests seen
    expect_key: str | None = None

    def do_POST(self):
        body = self.body()
        text = body["messages"][1]["content"]
        mode = (re.search(r"MODE:(\w+)", text) or [None, "ok"])[1]
        with self.server.lock:
            seen = self.server.calls[mode] = self.server.calls.get(mode, 0) + 1
        if self.server.expect_key and self.headers.get("Authorization") != f"Bearer {self.server.expect_key}":
            return self.send_json({"error": "bad key"}, 401)
        if mode == "echo_auth":  # a careless server that repeats the credentials in its error
            return self.send_json({"error": f"rejected {self.headers.get('Authorization')}"}, 500)
        if mode == "down500" or (mode == "flaky" and seen <= 2):
            return self.send_json({"error": "internal"}, 500)
        if mode == "slow":
            time.sleep(1.5)
        if mode == "nonjson":
            return self.chat("I think this answer is pretty good, maybe a 4 out of 5.")
        if mode == "range":
            return self.chat(json.dumps({"rationale": "great", "score": 9}))
        if "Answer A:" in text:  # pairwise: always picks whatever is shown first (a position-biased judge)
            return self.chat("```json\n" + json.dumps({"rationale": "A is better", "winner": "A"}) + "\n```")
        return self.chat(json.dumps({"rationale": "fine", "score": 4}))


@pytest.fixture
def judge_server():
    with serving(ScriptedJudge, calls={}, expect_key=None) as server:
        yield server



def _spec(url, **kw):
    return JudgeSpec(base_url=url, model="scripted", **{"retries": 2, "backoff_s": 0.01, "timeout_s": 0.5,
                                                        "concurrency": 3, **kw})


def _client(url, cache=None, key=None, **kw):
    return JudgeClient(Endpoint(url, "scripted", "scripted", "json_schema", key), _spec(url, **kw), cache)


# ---- the client: retries, repair, validation, cache --------------------------------------------------------

def test_verdicts_are_repaired_or_rejected():
    schema = rubric_schema((1, 5))
    assert parse_verdict('```json\n{"rationale": "ok", "score": 3}\n```', schema) == ({"rationale": "ok", "score": 3}, None)
    assert parse_verdict('Sure! {"rationale": "ok", "score": 2} Hope this helps.', schema)[0]["score"] == 2
    value, problem = parse_verdict('{"rationale": "ok", "score": 7}', schema)
    assert value is None and "score: 7 is not one of [1, 2, 3, 4, 5]" in problem
    assert parse_verdict("four out of five", schema)[1].startswith("not a JSON object")


def test_faults_are_retried_then_fail_and_good_answers_are_cached(judge_server, tmp_path):
    url, cache = v1_url(judge_server), JudgeCache(tmp_path / "cache")

    def msgs(mode):
        return [{"role": "system", "content": "grade"}, {"role": "user", "content": f"MODE:{mode}"}]

    schema = rubric_schema((1, 5))
    with _client(url, cache) as client:
        assert client.ask(msgs("flaky"), schema)["score"] == 4  # two HTTP 500s, then an answer
        assert client.counters.to_dict() == {"requests": 3, "cache_hits": 0, "retries": 2, "failures": 0}
        for mode, needle in [("down500", "HTTP 500"), ("nonjson", "not a JSON object"),
                             ("range", "score: 9 is not one of"), ("slow", "timed out after 0.5s")]:
            with pytest.raises(JudgeFailure, match=needle):
                client.ask(msgs(mode), schema)
        assert client.counters.requests == 3 + 4 * 3 and client.counters.failures == 4
    assert judge_server.calls["nonjson"] == 3  # re-asked with its mistake shown, not resent blindly
    with _client(url, cache) as client:
        assert client.ask(msgs("flaky"), schema)["score"] == 4
        assert client.counters.requests == 0 and client.counters.cache_hits == 1
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1  # only the valid verdict was stored


def test_server_down_is_a_failure_not_a_crash(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with _client(f"http://127.0.0.1:{port}/v1") as client:
        with pytest.raises(JudgeFailure, match="cannot reach the endpoint"):
            client.ask([{"role": "user", "content": "x"}], rubric_schema((1, 5)))
        assert client.counters.requests == 3


# ---- grading: per-sample records, pairwise orders, reliability -----------------------------------------------

def _samples(modes):
    return [{"id": m, "messages": [{"role": "user", "content": f"Question MODE:{m}"}], "output": f"answer {m} " * (i + 1),
             "reference": "ref", "scores": {}} for i, m in enumerate(modes)]


def test_judge_task_records_errors_apart_from_scores(judge_server, tmp_path):
    task = TaskSpec(name="t", data="x.jsonl", scorers=[ScorerSpec(type="judge", rubric=RUBRIC),
                                                        ScorerSpec(type="judge_pairwise")])
    samples = _samples(["ok", "okay", "range", "down500"])
    baseline = [{**s, "output": "baseline says " + s["id"]} for s in samples[:3]]  # one id unpaired
    with _client(v1_url(judge_server), JudgeCache(tmp_path / "c")) as client:
        metrics, reliability, _ = judge_task(client, task, samples, baseline_samples=baseline, baseline_run="B",
                                             gold=None, items=samples)
    by_label = {m[0]: m for m in metrics}
    _, values, errors, _ = by_label["judge"]
    assert values == [0.75, 0.75] and errors == 2
    assert samples[0]["judge"]["judge"] == {"score": 4, "normalized": 0.75, "rationale": "fine"}
    assert samples[2]["scores"]["judge"] is None and "score: 9" in samples[2]["judge"]["judge"]["error"]
    # The scripted judge always prefers answer A: every pair flips between orders, so all are ties.
    pw = reliability["judge_pairwise"]
    assert (pw["flip_rate"], pw["tie_rate"], pw["first_position_rate"]) == (1.0, 1.0, 1.0)
    assert by_label["judge_pairwise"][1] == [0.5, 0.5] and by_label["judge_pairwise"][2] == 1  # 'range' fails
    assert by_label["judge_pairwise"][3]["unpaired"] == 1 and pw["identical"] == 0
    orders = samples[0]["judge"]["judge_pairwise"]["orders"]
    assert [(o["a"], o["said"], o["winner"]) for o in orders] == [("run", "A", "run"), ("baseline", "A", "baseline")]


def test_pairwise_verdict_needs_both_orders_to_agree():
    agree = combine_orders([{"a": "run", "said": "A", "winner": "run"},
                            {"a": "baseline", "said": "B", "winner": "run"}], "B")
    assert agree["verdict"] == "win" and agree["flipped"] is False
    flip = combine_orders([{"a": "run", "said": "A", "winner": "run"},
                           {"a": "baseline", "said": "tie", "winner": "tie"}], "B")
    assert flip["verdict"] == "tie" and flip["flipped"] is True
    lost = combine_orders([{"a": "run", "said": "B", "winner": "baseline"},
                           {"a": "baseline", "said": "A", "winner": "baseline"}], "B")
    records = [{**r, "baseline_output": "a b"} for r in (agree, flip, lost)]
    rel = pairwise_reliability(records, ["a b c", "a", "a"])
    assert rel["flip_rate"] == pytest.approx(1 / 3) and rel["tie_rate"] == pytest.approx(1 / 3)
    assert (rel["wins"], rel["losses"]) == (1, 1)
    assert rel["longer_wins_rate"] == 1.0  # the win was the longer answer, the loss the shorter one


def test_kappa_matches_statsmodels():
    from statsmodels.stats.inter_rater import cohens_kappa, to_table

    human = [5, 1, 4, 1, 3, 5, 2, 1, 5, 4]
    judge = [5, 2, 4, 1, 5, 4, 2, 1, 5, 1]
    got = gold_agreement(judge + [None], human + [3], (1, 5))
    table, _ = to_table(list(zip(human, judge)), bins=[0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    assert got["n"] == 10 and got["errors"] == 1
    assert got["cohen_kappa"] == pytest.approx(cohens_kappa(table).kappa)
    assert got["quadratic_kappa"] == pytest.approx(cohens_kappa(table, wt="quadratic").kappa)
    assert got["exact_agreement"] == 0.6


# ---- through the CLI: a run with judge faults finishes, exit 0, errors recorded; the key never leaks ---------

def _fault_suite(tmp_path: Path, url: str, key_env: str | None = None, modes=("ok", "flaky", "down500", "nonjson",
                                                                              "range", "slow"), pairwise=False) -> Path:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"id": m, "prompt": f"Say hi. MODE:{m}", "reference": "hi"}) + "\n"
                            for m in modes))
    judge = {"base_url": url, "model": "scripted", "retries": 2, "backoff_s": 0.01, "timeout_s": 0.5}
    if key_env:
        judge["api_key_env"] = key_env
    suite = tmp_path / "faults.yaml"
    suite.write_text(json.dumps({"name": "faults", "judge": judge, "tasks": [{
        "name": "qa", "data": str(data), "generation": {"max_new_tokens": 4},
        "scorers": [{"type": "contains"}, {"type": "judge", "rubric": RUBRIC}]
        + ([{"type": "judge_pairwise"}] if pairwise else [])}]}))
    return suite


def test_cli_run_with_judge_faults_finishes_exit_0(judge_server, store_dir, tmp_path, tiny_model_dir):
    suite = _fault_suite(tmp_path, v1_url(judge_server))
    env = {"WB_JUDGE_CACHE": str(tmp_path / "cache")}
    res = wb("eval", str(tiny_model_dir), "--suite", str(suite), "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert ("judge: 16 requests sent, 0 answers from cache, 10 retries, 4 failed judge calls "
            "(recorded per sample as errors, not scored)") in res.stderr
    payload = json.loads(res.stdout)
    metric = next(m for m in payload["metrics"] if m["metric"] == "judge")
    assert (metric["value"], metric["n"], metric["errors"]) == (0.75, 2, 4)
    rows = {r["id"]: r for r in map(json.loads, (store_dir / "runs" / payload["run_id"] / "samples" / "qa.jsonl")
                                     .read_text().splitlines())}
    assert rows["flaky"]["scores"]["judge"] == 0.75
    for mode, needle in [("down500", "HTTP 500"), ("nonjson", "not a JSON object"), ("range", "9 is not one of"),
                         ("slow", "timed out")]:
        assert rows[mode]["scores"]["judge"] is None and needle in rows[mode]["judge"]["judge"]["error"]
    again = wb("eval", str(tiny_model_dir), "--suite", str(suite), "--json", env=env)
    assert "judge: 12 requests sent, 2 answers from cache" in again.stderr  # only the failures are asked again


def test_api_key_never_stored_or_logged(judge_server, store_dir, tmp_path, tiny_model_dir, caplog):
    key = "sk-wbtest-" + secrets.token_hex(12)
    judge_server.expect_key = key
    suite = _fault_suite(tmp_path, v1_url(judge_server), key_env="WB_TEST_JUDGE_KEY", modes=("ok", "echo_auth"))
    env = {"WB_JUDGE_CACHE": str(tmp_path / "cache"), "WB_TEST_JUDGE_KEY": key}
    res = wb("eval", str(tiny_model_dir), "--suite", str(suite), "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert "1 failed judge calls" in res.stderr  # the key was sent (else 401s) and the echo was redacted
    # In-process too, with httpx/httpcore debug logging on.
    caplog.set_level(logging.DEBUG)
    with _client(v1_url(judge_server), JudgeCache(tmp_path / "cache"), key=key) as client, \
            pytest.raises(JudgeFailure) as failure:
        client.ask([{"role": "system", "content": "s"}, {"role": "user", "content": "MODE:echo_auth"}],
                   rubric_schema((1, 5)))
    assert "***" in str(failure.value)
    files = [p for root in (store_dir, tmp_path / "cache") for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in files) and any(p.suffix == ".jsonl" for p in files)
    assert len([p for p in files if p.parent.parent == tmp_path / "cache"]) >= 1
    for path in files:
        assert key.encode() not in path.read_bytes(), path
    for text in (res.stdout, res.stderr, caplog.text, str(failure.value)):
        assert key not in text


def test_wb_judge_regrades_a_recorded_run_pairwise(judge_server, store_dir, tmp_path, tiny_model_dir):
    suite = _fault_suite(tmp_path, v1_url(judge_server), modes=("ok", "fine"), pairwise=True)
    env = {"WB_JUDGE_CACHE": str(tmp_path / "cache")}
    res = wb("eval", str(tiny_model_dir), "--suite", str(suite), "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert "judge_pairwise: skipped: pairwise grading needs a baseline run" in res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    judged = wb("judge", run_id, "--baseline", run_id, "--json", env=env)
    assert judged.returncode == 0, judged.stderr
    payload = json.loads(judged.stdout)
    assert payload["source_run"] == run_id
    pairwise = next(m for m in payload["metrics"] if m["metric"] == "judge_pairwise")
    assert (pairwise["value"], pairwise["n"], pairwise["baseline_run"]) == (0.5, 2, run_id)
    # Against itself every pair is identical: ties without a judge call; the rubric grades come from the cache.
    assert payload["judge"]["tasks"]["qa"]["judge_pairwise"]["identical"] == 2
    assert (payload["judge"]["requests"], payload["judge"]["cache_hits"]) == (0, 2)
    manifest = json.loads((store_dir / "runs" / payload["run_id"] / "run.json").read_text())
    assert manifest["kind"] == "judge" and manifest["source_run"] == run_id
    # Another endpoint, down: every call fails, the run still finishes (exit 0) with the errors recorded.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = wb("judge", run_id, "--judge-url", f"http://127.0.0.1:{port}/v1", "--judge-model", "m", "--json", env=env)
    assert down.returncode == 0, down.stderr
    assert "2 failed judge calls" in down.stderr
    rubric = next(m for m in json.loads(down.stdout)["metrics"] if m["metric"] == "judge")
    assert (rubric["value"], rubric["n"], rubric["errors"]) == (None, 0, 2)

"""A hostile or buggy judge endpoint, against a real HTTP server in a thread (test_judge's ScriptedJudge plus two
behaviours): a valid verdict that echoes the Authorization header never gets the key stored; the cache is per
endpoint; a non-retried 4xx counts as a failure."""

import contextlib
import json
import secrets

import pytest
from loopback import serving, v1_url
from test_cli import wb
from test_judge import ScriptedJudge, _client, _fault_suite

from workbench.judge.cache import JudgeCache
from workbench.judge.client import JudgeFailure
from workbench.judge.prompts import rubric_schema


class HostileJudge(ScriptedJudge):
    def do_POST(self):
        text = self.body()["messages"][1]["content"]
        with self.server.lock:
            self.server.hits = getattr(self.server, "hits", 0) + 1
        if "MODE:echo_valid" in text:  # a valid verdict whose rationale repeats the credentials
            return self.chat(json.dumps({"rationale": f"I saw {self.headers.get('Authorization')}", "score": 4}))
        if "MODE:forbidden" in text:
            return self.send_json({"error": "no access"}, 403)
        return self.chat(json.dumps({"rationale": "fine", "score": 4}))


@pytest.fixture
def hostile_server():
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(serving(HostileJudge, calls={}, expect_key=None))


def _messages(mode):
    return [{"role": "system", "content": "grade"}, {"role": "user", "content": f"MODE:{mode}"}]


def test_key_echoed_in_a_valid_verdict_is_never_stored(hostile_server, store_dir, tmp_path, tiny_model_dir):
    server = hostile_server()
    key = "sk-test-CANARY" + secrets.token_hex(8)
    suite = _fault_suite(tmp_path, v1_url(server), key_env="WB_TEST_JUDGE_KEY", modes=("echo_valid",))
    env = {"WB_JUDGE_CACHE": str(tmp_path / "cache"), "WB_TEST_JUDGE_KEY": key}
    res = wb("eval", str(tiny_model_dir), "--suite", str(suite), "--json", env=env)
    assert res.returncode == 0, res.stderr
    rerun = wb("judge", json.loads(res.stdout)["run_id"], "--json", env={**env, "WB_JUDGE_CACHE": str(tmp_path / "c2")})
    assert rerun.returncode == 0, rerun.stderr
    files = [p for root in (store_dir, tmp_path / "cache", tmp_path / "c2") for p in root.rglob("*") if p.is_file()]
    samples = [p for p in files if p.name == "qa.jsonl"]
    assert len(samples) == 2  # the eval run's and the judge run's
    for path in samples:
        (row,) = [json.loads(line) for line in path.read_text().splitlines()]
        assert row["judge"]["judge"]["rationale"] == "I saw Bearer ***"
    for path in files:
        assert key.encode() not in path.read_bytes(), path
    assert key not in res.stdout + res.stderr + rerun.stdout + rerun.stderr


def test_cache_is_per_endpoint(hostile_server, tmp_path):
    first, second = hostile_server(), hostile_server()
    cache = JudgeCache(tmp_path / "cache")
    schema = rubric_schema((1, 5))
    with _client(v1_url(first), cache) as client:
        assert client.ask(_messages("ok"), schema)["score"] == 4
    with _client(v1_url(second), cache) as client:  # same model name and request, another server
        assert client.ask(_messages("ok"), schema)["score"] == 4
        assert (client.counters.requests, client.counters.cache_hits) == (1, 0)
    with _client(v1_url(first), cache) as client:
        client.ask(_messages("ok"), schema)
        assert (client.counters.requests, client.counters.cache_hits) == (0, 1)
    assert (first.hits, second.hits) == (1, 1)


def test_not_retried_4xx_counts_as_a_failure(hostile_server, tmp_path):
    server = hostile_server()
    with _client(v1_url(server)) as client:
        with pytest.raises(JudgeFailure, match="HTTP 403"):
            client.ask(_messages("forbidden"), rubric_schema((1, 5)))
        assert client.counters.to_dict() == {"requests": 1, "cache_hits": 0, "retries": 0, "failures": 1}

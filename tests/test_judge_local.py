"""The local judge for real: llama.cpp's OpenAI-compatible server on loopback with the embedded default model."""

import json
import socket

import pytest
from test_cli import wb

from workbench.config import JudgeSpec
from workbench.judge.client import Endpoint, JudgeClient
from workbench.judge.prompts import (
    PAIRWISE_SCHEMA,
    pairwise_messages,
    rubric_messages,
    rubric_schema,
)
from workbench.runtimes.llamacpp.server import local_server

pytest.importorskip("llama_cpp", reason="needs the gguf extra (llama-cpp-python)")
pytest.importorskip("fastapi", reason="needs the judge extra (llama.cpp's server dependencies)")


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_local_server_grades_with_a_schema_and_stops_on_ctrl_c():
    from workbench.checkpoints.default_model import default_gguf_path

    question = [{"role": "user", "content": "Why is the sky blue?"}]
    with pytest.raises(KeyboardInterrupt), local_server(default_gguf_path(), n_ctx=2048) as url:
        port = int(url.split(":")[2].split("/")[0])
        client = JudgeClient(Endpoint(url, "judge", "test", "json_object"), JudgeSpec(max_tokens=96))
        verdict = client.ask(rubric_messages("5 = right, 1 = wrong", (1, 5), question, "Rayleigh scattering."),
                             rubric_schema((1, 5)))
        assert verdict["score"] in range(1, 6) and isinstance(verdict["rationale"], str)
        pair = client.ask(pairwise_messages(None, question, "Rayleigh scattering.", "It reflects the sea."),
                          PAIRWISE_SCHEMA)
        assert pair["winner"] in ("A", "B", "tie")
        assert client.counters.requests == 2
        client.close()
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run
    assert _refuses(port)  # the server was stopped on the way out


@pytest.mark.slow
def test_judge_run_rubric_pairwise_and_cached_rerun(store_dir, tmp_path):
    """The judge-demo suite: base (HF) as baseline, its Q4_1 GGUF as the run; rubric, pairwise and gold-set
    grading on a real llama.cpp server; the same run again sends zero judge requests."""
    from workbench.checkpoints.default_model import default_gguf_path

    env = {"WB_JUDGE_CACHE": str(tmp_path / "judge-cache")}
    base = wb("eval", "default", "--suite", "judge-demo", "--limit", "3", "--json", env=env)
    assert base.returncode == 0, base.stderr
    base_id = json.loads(base.stdout)["run_id"]
    args = ("eval", str(default_gguf_path()), "--suite", "judge-demo", "--limit", "3", "--baseline", base_id, "--json")
    first = wb(*args, env=env)
    assert first.returncode == 0, first.stderr
    judge = json.loads(first.stdout)["judge"]
    pw = judge["tasks"]["explain"]["judge_pairwise"]
    # 3 rubric grades + 6 gold-set grades + 2 orders per pair of different answers; what the baseline run
    # already asked (the gold set, identical answers' grades) comes from the cache
    calls = 3 + 6 + 2 * (3 - pw["identical"])
    assert judge["requests"] > 0 and judge["cache_hits"] + judge["requests"] - judge["retries"] == calls
    assert judge["endpoint"]["server_started"] is True
    # The default HF model was converted from this very GGUF: some answers come out identical (ties, no call).
    assert pw["n"] == 3 and pw["errors"] == 0 and pw["identical"] < 3
    assert 0 <= pw["flip_rate"] <= 1 and 0 <= pw["tie_rate"] <= 1 and pw["wins"] + pw["losses"] <= 3
    rubric = judge["tasks"]["explain"]["judge"]
    assert rubric["gold"]["n"] + rubric["gold"]["errors"] == 6 and "spearman_rho" in rubric["length_correlation"]
    assert "flip rate" in first.stderr and "tie rate" in first.stderr and "spearman" in first.stderr
    run_dir = store_dir / "runs" / json.loads(first.stdout)["run_id"]
    rows = [json.loads(line) for line in (run_dir / "samples" / "explain.jsonl").read_text().splitlines()]
    assert all({"judge", "judge_pairwise"} <= set(r["judge"]) for r in rows)
    assert sum(len(r["judge"]["judge_pairwise"]["orders"]) == 2 for r in rows) == 3 - pw["identical"]

    again = wb(*args, env=env)
    assert again.returncode == 0, again.stderr
    judge2 = json.loads(again.stdout)["judge"]
    assert judge2["requests"] == 0 and judge2["endpoint"]["server_started"] is False
    assert judge2["cache_hits"] == calls - judge["failures"]
    assert "judge: 0 requests sent" in again.stderr
    assert judge2["tasks"] == judge["tasks"]


def test_a_local_server_that_cannot_start_is_an_environment_problem_raised_once(tmp_path):
    from workbench.errors import EnvironmentProblem
    from workbench.judge.cache import JudgeCache
    from workbench.judge.session import JudgeSession

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)  # passes the magic check, llama.cpp cannot load it
    messages = [{"role": "user", "content": "x"}]
    with JudgeSession(JudgeSpec(model=str(bad), concurrency=2), JudgeCache(tmp_path / "cache")) as session, \
            pytest.raises(EnvironmentProblem, match="llama.cpp's server exited with code"):
        session.client.map(lambda _: session.client.ask(messages, PAIRWISE_SCHEMA), range(4))
    assert session.client.counters.requests == 0 and session.server_started is False

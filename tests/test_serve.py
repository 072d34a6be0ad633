"""`wb serve`, the canary endpoint, as users run it: a `wb serve` process in front of two real llama.cpp servers (the
default model's q8_0 and q4_k_m GGUFs), driven by concurrent httpx clients; its log read back as `wb replay` reads
it; a kill -9 mid-traffic; --shadow and --no-content; a failing candidate; and the refusals."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hostile_support import assert_refused, run_cli, snapshot
from loopback import JsonHandler, TieJudge, serving, v1_url

from workbench.canary.routing import key_point, routed_side

REPO = Path(__file__).resolve().parent.parent
MAX_TOKENS = 2


@pytest.fixture(scope="module")
def upstreams(default_export):
    """The two llama.cpp servers, started once for the tests that give `wb serve` their URLs."""
    from workbench.runtimes.llamacpp.server import local_server

    with local_server(default_export["q8_0"].path, n_ctx=512, threads=1, alias="baseline") as base, \
            local_server(default_export["q4_k_m"].path, n_ctx=512, threads=1, alias="candidate") as cand:
        yield base, cand


class Canary:
    """A `wb serve` subprocess on a free port, its store, and its log."""

    def __init__(self, tmp_path: Path, *args: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.store = tmp_path / "store"
        self.stderr = tmp_path / "serve.err"
        env = {**os.environ, "PYTHONPATH": str(REPO), "WB_STORE": str(self.store)}
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "workbench", "serve", "--port", str(self.port),
                                          "--threads", "1", *args], env=env, stdout=subprocess.PIPE, stderr=err)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr.read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"wb serve did not come up: {self.stderr.read_text()}")

    @property
    def log(self) -> Path:
        (path,) = self.store.glob("runs/*/log.jsonl")
        return path

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def canaries():
    started = []
    yield lambda tmp_path, *args: started.append(Canary(tmp_path, *args)) or started[-1]
    for canary in started:
        canary.kill()


def body(user: int, *, stream: bool = False, in_body: bool = False) -> dict:
    return {"model": "anything", "messages": [{"role": "user", "content": f"Say hello to user {user}."}],
            "max_tokens": MAX_TOKENS, "temperature": 0, **({"user": f"u{user}"} if in_body else {}),
            **({"stream": True} if stream else {})}


async def drive(url: str, requests: list[tuple[dict, dict]], clients: int, answers: list, stop_after: float = 1e9):
    """`clients` concurrent httpx clients taking (headers, body) pairs off one queue; each answer appended as
    (status, body text, headers sent, body sent); stops early after `stop_after` seconds."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    deadline = time.monotonic() + stop_after

    async def client():
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while not queue.empty() and time.monotonic() < deadline:
                headers, sent = queue.get_nowait()
                try:
                    resp = await http.post("/v1/chat/completions", json=sent, headers=headers)
                except httpx.TransportError:
                    answers.append((None, "", headers, sent))
                    continue
                answers.append((resp.status_code, resp.text, headers, sent))

    await asyncio.gather(*(client() for _ in range(clients)))


def streamed_text(sse: str) -> str:
    chunks = [json.loads(line[5:]) for line in sse.splitlines() if line.startswith("data:") and "[DONE]" not in line]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


@pytest.mark.slow
def test_fraction_200_requests_8_clients_per_user_sides_and_a_whole_log(default_export, tmp_path, canaries):
    from scipy.stats import binom

    canary = canaries(tmp_path, "--baseline", str(default_export["q8_0"].path),
                      "--candidate", str(default_export["q4_k_m"].path), "--fraction", "0.25")
    users = 40
    # user i's requests carry its key in the X-WB-User header (even i) or the body's `user` (odd i); every 4th
    # request is streamed
    requests = [({"X-WB-User": f"u{i % users}"} if i % 2 == 0 else {},
                 body(i % users, stream=i % 4 == 3, in_body=i % 2 == 1)) for i in range(200)]
    answers: list = []
    asyncio.run(drive(canary.url, requests, 8, answers))
    assert [a[0] for a in answers] == [200] * 200
    records = canary.records()
    assert len(records) == 200
    sides: dict[str, set] = {}
    for rec in records:
        sides.setdefault(rec["user"], set()).add(rec["side"])
        assert rec["status"] == 200 and rec["error"] is None and rec["side"] == rec["routed"]
        assert isinstance(rec["response"]["choices"][0]["message"]["content"], str), rec
        assert rec["request"]["messages"] and rec["latency_ms"] > 0
        assert rec["response"]["model"] == rec["side"]  # the llama.cpp servers' aliases: who answered
        if not rec["stream"]:
            assert rec["usage"]["completion_tokens"] <= MAX_TOKENS
    assert sorted(sides) == sorted(f"u{i}" for i in range(users))
    assert all(len(s) == 1 for s in sides.values()), sides  # one user, one side
    on_candidate = sum(s == {"candidate"} for s in sides.values())
    assert on_candidate == sum(routed_side(f"u{i}", 0.25) == "candidate" for i in range(users))
    # routing is per user: the candidate's users ~ Binomial(40, 0.25); two-sided 99.9% bound [3, 18]
    low, high = binom.interval(0.999, users, 0.25)
    assert low <= on_candidate <= high, on_candidate
    # what each client got is what the log holds, streamed answers put back together included
    logged = {r["response"]["id"]: r for r in records}  # the upstream's chatcmpl id, which the client got too
    assert len(logged) == 200
    for _, text, headers, sent in answers:
        if sent.get("stream"):
            answer_id, got = json.loads(text.split("data:")[1])["id"], streamed_text(text)
        else:
            answer_id, got = json.loads(text)["id"], json.loads(text)["choices"][0]["message"]["content"]
        rec = logged.pop(answer_id)
        assert rec["response"]["choices"][0]["message"]["content"] == got
        assert rec["request"] == sent and rec["user"] == headers.get("X-WB-User", sent.get("user"))
    assert canary.stop() == 0
    run = json.loads((canary.log.parent / "run.json").read_text())
    assert run["kind"] == "canary" and run["status"] == "ok" and run["fraction"] == 0.25
    counts = {m["metric"]: m["value"] for m in json.loads((canary.log.parent / "results.json").read_text())["metrics"]}
    assert counts["records"] == 200 and counts["candidate_requests"] == 5 * on_candidate
    assert "canary stopped: 200 exchanges logged" in canary.stderr.read_text()

    # `wb replay` reads the canary's log as it is: the candidate against the answers the log holds
    with serving(TieJudge) as judge:
        (tmp_path / "judge.yaml").write_text(f"judge: {{base_url: '{v1_url(judge)}', model: tie-judge}}\n")
        replayed = subprocess.run(
            [sys.executable, "-m", "workbench", "replay", str(canary.log), "--candidate",
             str(default_export["q4_k_m"].path), "--against-logged", "--judge", str(tmp_path / "judge.yaml"),
             "--max-new-tokens", str(MAX_TOKENS), "--json"],
            env={**os.environ, "PYTHONPATH": str(REPO), "WB_STORE": str(canary.store)}, capture_output=True, text=True,
            timeout=300)
    assert replayed.returncode == 0, replayed.stderr
    from workbench.dashboard.views import comparable_runs
    from workbench.store import Store

    store = Store.open(canary.store)
    run = store.resolve(json.loads(replayed.stdout)["run_id"])
    ingest = run.manifest["ingest"]["counts"]
    assert ingest["read"] == 200 and ingest["duplicates_exact"] == 200 - users and ingest["kept"] == users
    metrics = {m["metric"]: m["value"] for m in run.metrics}
    assert metrics["win_rate"] == 0.5  # every verdict a tie
    assert {"candidate.empty", "baseline.empty", "candidate.length_chars", "candidate.refusal"} <= set(metrics)
    # a logged answer of MAX_TOKENS tokens may be blank: nothing to compare with, counted apart
    assert len(run.samples("replay")) == users - ingest["no_logged_answer"] > users // 2
    assert run.run_id in {m["run_id"] for m in comparable_runs(store.list_runs())}  # the Compare page lists it


def test_routing_hash_spreads_keys_uniformly():
    from scipy.stats import binom

    keys = [f"user-{i}" for i in range(20000)]
    on_candidate = sum(routed_side(k, 0.1) == "candidate" for k in keys)
    low, high = binom.interval(0.9999, len(keys), 0.1)
    assert low <= on_candidate <= high
    assert all(0 <= key_point(k) < 1 for k in keys[:100])
    assert routed_side("x", 0.0) == "baseline" and routed_side("x", 1.0) == "candidate"


@pytest.mark.slow
def test_kill_9_mid_traffic_leaves_only_whole_records(upstreams, tmp_path, canaries):
    base, cand = upstreams
    canary = canaries(tmp_path, "--baseline", base, "--candidate", cand, "--fraction", "0.5")
    answers: list = []
    requests = [({"X-WB-User": f"k{i % 16}"}, body(i, stream=i % 3 == 0)) for i in range(400)]

    async def traffic_then_kill():
        task = asyncio.create_task(drive(canary.url, requests, 8, answers))
        deadline = time.monotonic() + 60
        while len(answers) < 15 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        os.kill(canary.proc.pid, signal.SIGKILL)
        await task

    asyncio.run(traffic_then_kill())
    canary.proc.wait()
    text = canary.log.read_bytes().decode()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]  # every line parses
    answered = sum(a[0] == 200 for a in answers)
    assert 15 <= answered <= len(records) < 400  # every answer the clients got was logged before it left


@pytest.mark.slow
def test_shadow_returns_the_baseline_and_logs_both(upstreams, tmp_path, canaries):
    base, cand = upstreams
    canary = canaries(tmp_path, "--baseline", base, "--candidate", cand, "--shadow")
    for i, stream in ((1, False), (2, True), (3, False)):
        resp = httpx.post(f"{canary.url}/v1/chat/completions", json=body(i, stream=stream), timeout=60)
        assert resp.status_code == 200
        if not stream:
            assert resp.json()["model"] == "baseline"
        else:
            assert '"model": "baseline"' in resp.text and '"model": "candidate"' not in resp.text
    assert canary.stop() == 0  # waits for the shadow records
    records = canary.records()
    assert len(records) == 3
    for rec in records:
        assert rec["side"] == "baseline" and rec["response"]["model"] == "baseline"
        assert rec["shadow"]["side"] == "candidate" and rec["shadow"]["status"] == 200
        assert rec["shadow"]["response"]["model"] == "candidate"
        assert rec["shadow"]["response"]["choices"][0]["message"]["content"]
        assert rec["shadow"]["usage"]["completion_tokens"] <= MAX_TOKENS


@pytest.mark.slow
def test_no_content_logs_ids_sides_and_counts_only(upstreams, tmp_path, canaries):
    base, cand = upstreams
    canary = canaries(tmp_path, "--baseline", base, "--candidate", cand, "--shadow", "--no-content")
    secret = "PLANTED-Zq81x"
    tools = [{"type": "function", "function": {"name": "lookup_" + secret, "parameters": {"type": "object"}}}]
    answers = []
    for stream in (False, True):
        sent = {"messages": [{"role": "user", "content": f"My code is {secret}. Repeat it."}], "tools": tools,
                "max_tokens": MAX_TOKENS, "stream": stream}
        resp = httpx.post(f"{canary.url}/v1/chat/completions", json=sent, timeout=60,
                          headers={"Authorization": "Bearer sk-client-key-123", "X-WB-User": "alice"})
        assert resp.status_code == 200
        answers.append(streamed_text(resp.text) if stream else resp.json()["choices"][0]["message"]["content"])
    assert canary.stop() == 0
    text = canary.log.read_text()
    assert secret not in text and "sk-client-key-123" not in text and "Repeat it" not in text
    assert all(answer and answer not in text for answer in answers)
    for rec in map(json.loads, text.splitlines()):
        assert "messages" not in rec["request"] and "tools" not in rec["request"]
        assert rec["response"]["choices"][0]["message"] == {"role": "assistant"}
        assert rec["shadow"]["response"]["choices"][0]["message"] == {"role": "assistant"}
        assert rec["user"] == "alice" and rec["side"] == "baseline" and rec["status"] == 200 and rec["id"]
        assert rec["latency_ms"] > 0
    assert json.loads(text.splitlines()[0])["usage"]["completion_tokens"] <= MAX_TOKENS


class Broken(JsonHandler):
    """A candidate that lists a model and then fails every chat completion."""

    def do_GET(self):
        self.send_json({"data": [{"id": "broken"}]})

    def do_POST(self):
        self.body()
        self.send_json({"error": {"message": "overloaded"}}, status=500)


@pytest.mark.slow
def test_a_failing_candidate_fails_over_and_leaves_the_rotation(upstreams, tmp_path, canaries):
    base, _ = upstreams
    with serving(Broken) as broken:
        canary = canaries(tmp_path, "--baseline", base, "--candidate", v1_url(broken), "--fraction", "1",
                          "--max-failures", "2", "--cooldown", "600")
        for i in range(4):
            resp = httpx.post(f"{canary.url}/v1/chat/completions", json=body(i, stream=i == 1), timeout=60)
            assert resp.status_code == 200
        health = httpx.get(f"{canary.url}/health").json()
        assert canary.stop() == 0
    records = canary.records()
    assert [r["side"] for r in records] == ["baseline"] * 4 and all(r["routed"] == "candidate" for r in records)
    assert [bool(r.get("failover")) for r in records] == [True, True, False, False]
    assert records[0]["failover"]["status"] == 500 and "overloaded" in records[0]["failover"]["error"]
    assert health["failovers"] == 2 and health["sides"]["candidate"]["in_rotation"] is False
    assert "the candidate failed 2 times in a row" in canary.stderr.read_text()


@pytest.mark.slow
def test_a_failing_baseline_returns_its_status(tmp_path, canaries, upstreams):
    _, cand = upstreams
    with serving(Broken) as broken:
        canary = canaries(tmp_path, "--baseline", v1_url(broken), "--candidate", cand, "--fraction", "0")
        resp = httpx.post(f"{canary.url}/v1/chat/completions", json=body(1), timeout=60)
        assert resp.status_code == 500 and "overloaded" in resp.text
        assert canary.stop() == 0
    (rec,) = canary.records()
    assert rec["status"] == 500 and rec["side"] == "baseline" and "overloaded" in rec["error"]


@pytest.mark.parametrize("case", ["fraction-above-1", "fraction-and-shadow", "no-such-candidate",
                                  "hf-candidate", "port-in-use", "candidate-url-down"])
def test_refusals_write_nothing(case, tmp_path, capsys, monkeypatch, tiny_model_dir):
    from workbench.checkpoints.default_model import default_gguf_path

    store = tmp_path / "store"
    monkeypatch.setenv("WB_STORE", str(store))
    gguf = str(default_gguf_path())
    argv = ["serve", "--baseline", gguf, "--candidate", gguf]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]  # nothing listens there once it is closed
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv += ["--port", str(port)] if case == "port-in-use" else []
        code, needles = {
            "fraction-above-1": (2, ("--fraction",)), "fraction-and-shadow": (2, ("--shadow",)),
            "no-such-candidate": (3, ("--candidate", "nowhere.gguf")), "hf-candidate": (3, ("--candidate", "hf")),
            "port-in-use": (4, ("--port", str(port))), "candidate-url-down": (4, ("--candidate", f"127.0.0.1:{nobody}")),
        }[case]
        extra = {"fraction-above-1": ["--fraction", "1.5"], "fraction-and-shadow": ["--fraction", "0.2", "--shadow"],
                 "no-such-candidate": ["--candidate", str(tmp_path / "nowhere.gguf")],
                 "hf-candidate": ["--candidate", str(tiny_model_dir)],
                 "candidate-url-down": ["--candidate", f"http://127.0.0.1:{nobody}/v1"]}.get(case, [])
        before = snapshot(tmp_path)
        assert_refused(run_cli(argv + extra, capsys), code, needles, before, tmp_path)
    assert not store.exists()


def test_a_stream_split_anywhere_is_put_back_together_with_its_tool_calls():
    from workbench.canary.completion import StreamedCompletion

    chunks = [
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Looking "}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "it up."}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_", "arguments": '{"ci'}}]}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"name": "weather", "arguments": 'ty": "Oslo"}'}}]}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
         "usage": {"prompt_tokens": 9, "completion_tokens": 7}},
    ]
    wire = "".join(f"data: {json.dumps(c)}\r\n\r\n" for c in chunks).encode() + b"data: [DONE]\r\n\r\n"
    for step in (1, 7, len(wire)):
        acc = StreamedCompletion()
        for i in range(0, len(wire), step):
            acc.feed(wire[i:i + step])
        done = acc.completion()
        assert acc.done and acc.chunks == len(chunks)
        assert done["id"] == "c1" and done["model"] == "m" and done["usage"]["completion_tokens"] == 7
        (choice,) = done["choices"]
        assert choice["finish_reason"] == "tool_calls"
        assert choice["message"]["content"] == "Looking it up."
        assert choice["message"]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]

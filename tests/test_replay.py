"""`wb replay`: logged conversations answered again by a candidate and compared with a baseline model or the logged
answers. The models are real (the tiny random Llama of conftest, in transformers) or a scripted loopback endpoint
whose answers are planted; the judge is a scripted loopback endpoint that prefers the answer saying GOOD, so the
verdicts, the sequential stop and the gates' outcome are known in advance."""

import json

import pytest
from hostile_support import Workspace, assert_refused, run_cli, snapshot
from loopback import JsonHandler, serving, v1_url

from workbench.compare.runs import compare, sample_diffs, sample_tasks
from workbench.dashboard import views
from workbench.gate.verdicts import significance_verdicts
from workbench.replay.checks import check_answer
from workbench.replay.conversations import Conversation
from workbench.replay.run import replay
from workbench.replay.sequential import SequentialTest, log_likelihood_ratio, win_rate
from workbench.store import Store

WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "required": ["city"], "additionalProperties": False,
                   "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}}}}}]


class Scripted(JsonHandler):
    """GET /models: one model. A judge request (a JSON verdict asked for): the answer saying GOOD wins, neither or
    both tie. A model request: the planted answer for the last user message (server.answers), else 'GOOD answer'."""

    def do_GET(self):
        self.send_json({"object": "list", "data": [{"id": "planted"}]})

    def do_POST(self):
        body = self.body()
        if "response_format" in body or "grammar" in body:
            user = next(m["content"] for m in body["messages"] if m["role"] == "user")
            a, b = user.split("Answer A:\n", 1)[1].split("\n\nAnswer B:\n", 1)
            winner = "tie" if ("GOOD" in a) == ("GOOD" in b) else "A" if "GOOD" in a else "B"
            with self.server.lock:
                self.server.judged += 1
            self.chat(json.dumps({"rationale": "the one that says GOOD", "winner": winner}))
            return
        last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        self.chat(self.server.answers.get(last, "GOOD answer"))


@pytest.fixture
def scripted():
    with serving(Scripted, answers={}, judged=0) as server:
        yield server


def _judge(server) -> dict:
    return {"base_url": v1_url(server), "model": "scripted-judge", "concurrency": 4}


def _conversation(i: int, logged: str | dict | None = "GOOD logged answer", **kw) -> Conversation:
    answer = {"role": "assistant", "content": logged} if isinstance(logged, str) else logged
    return Conversation(id=f"log-{i}", messages=[{"role": "user", "content": f"question {i}?"}],
                        logged_answer=answer, source=f"prod.jsonl:{i + 1}", model="gpt-x", **kw)


# ---- the checks and the statistics, on planted values ----------------------------------------------------------

def test_checks_on_planted_answers():
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    # JSON where the log answered JSON; not applicable where it did not
    assert check_answer('```json\n{"a": 1}\n```', logged='{"a": 2}', tools=None)["json_valid"] == 1.0
    assert check_answer("a: 1", logged='{"a": 2}', tools=None)["json_valid"] == 0.0
    assert check_answer('{"a": 1}', logged="plain text", tools=None)["json_valid"] is None
    # tool calls: OpenAI tool_calls and a plain JSON object, checked against the logged schemas
    assert check_answer(call, logged=call, tools=WEATHER)["tool_call_valid"] == 1.0
    assert check_answer('{"name": "get_weather", "arguments": {"city": "Rome", "unit": "C"}}', logged=call,
                        tools=WEATHER)["tool_call_valid"] == 1.0
    assert check_answer('{"name": "get_weather", "arguments": {"unit": "K"}}', logged=call,
                        tools=WEATHER)["tool_call_valid"] == 0.0  # city missing, unit not in the enum
    assert check_answer('{"name": "delete_all", "arguments": {}}', logged="ok", tools=WEATHER)["tool_call_valid"] == 0.0
    assert check_answer("It is sunny.", logged=call, tools=WEATHER)["tool_call_valid"] == 0.0
    assert check_answer("It is sunny.", logged="Sunny.", tools=WEATHER)["tool_call_valid"] is None
    refusal = check_answer("I\u2019m sorry, but I can\u2019t help with that.", logged=None, tools=None)
    assert refusal["refusal"] == 1.0 and refusal["empty"] == 0.0 and refusal["length_chars"] == 38.0
    assert check_answer("  \n", logged=None, tools=None)["empty"] == 1.0
    assert check_answer(call, logged=None, tools=WEATHER)["empty"] == 0.0


def test_win_rate_and_the_sequential_test():
    rate = win_rate(["win"] * 6 + ["tie"] * 2 + ["loss"] * 2)
    assert rate["value"] == pytest.approx(0.7) and rate["n"] == 10
    assert rate["ci_low"] < 0.7 < rate["ci_high"] < 1
    # Beta(1,1) mixture: LR after 8 losses is 2^8 / 9 = 28.4 >= 1/0.05; after 7 it is 16 < 20
    assert log_likelihood_ratio(0, 8) == pytest.approx(__import__("math").log(256 / 9))
    test = SequentialTest()
    assert not test.update(["loss"] * 7)
    assert test.update(["loss", "tie"]) and test.decision == "candidate worse"
    balanced = SequentialTest()
    for _ in range(25):
        balanced.update(["win", "loss", "tie", "loss", "win"])
    assert balanced.decision == "undecided"


# ---- replays on real runtimes ------------------------------------------------------------------------------------

def test_against_logged_stops_early_and_the_gate_fails(tiny_model_dir, scripted, store_dir, tmp_path):
    """The tiny random model never says GOOD; every logged answer does: every verdict is a loss, so the sequential
    test decides after 8 decisive verdicts (the second batch of 4) of 20, and the gate on the win rate's upper bound
    fails."""
    gates = tmp_path / "gates.yaml"
    gates.write_text("gates:\n  - {task: replay, metric: win_rate.ci_high, min_value: 0.5}\n")
    conversations = [_conversation(i) for i in range(20)]
    result = replay(None, str(tiny_model_dir), against_logged=True, conversations=conversations,
                    judge=_judge(scripted), batch=4, max_new_tokens=6, gates=gates, progress=False)
    seq = result.sequential
    assert (seq["decision"], seq["n_judged"], seq["n_total"], seq["stopped_early"]) == \
        ("candidate worse", 8, 20, True)
    assert scripted.judged == 16  # both orders of 8 conversations, nothing after the stop
    assert not result.passed and result.gate.results[0].status == "fail"
    run = Store.open(store_dir).resolve(result.run.run_id)
    assert run.manifest["kind"] == "replay" and run.manifest["status"] == "ok"
    assert run.manifest["baseline"] == {"kind": "logged answers"}
    assert run.metric("replay", "win_rate")["value"] == 0.0 and run.metric("replay", "win_rate")["losses"] == 8
    samples = run.samples("replay")
    assert len(samples) == 8 and all(s["id"].startswith("log-") and s["verdict"] == "loss" for s in samples)
    assert all(s["baseline_output"] == "GOOD logged answer" and s["baseline_is_logged"] for s in samples)
    assert run.metric("replay", "baseline.length_chars")["value"] == len("GOOD logged answer")


def test_candidate_against_a_baseline_model_with_planted_answers(tiny_model_dir, scripted, store_dir):
    """The candidate is a served model (the scripted endpoint) answering as planted; the baseline is the tiny model
    in transformers. The candidate wins where it says GOOD; the checks count its JSON, tool call, refusal and empty
    answers."""
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    conversations = [_conversation(0, '{"ok": true}'), _conversation(1, call, tools=WEATHER),
                     _conversation(2), _conversation(3), _conversation(4), _conversation(5)]
    scripted.answers.update({"question 0?": '{"GOOD": 1}', "question 1?": '{"name": "get_weather", "arguments": {}}',
                             "question 2?": "I'm sorry, but I cannot help with that.", "question 3?": ""})
    result = replay(None, v1_url(scripted), baseline=str(tiny_model_dir), endpoint_model="planted",
                    conversations=conversations, judge=_judge(scripted), max_new_tokens=6, progress=False)
    run = result.run
    assert run.manifest["checkpoint"]["format"] == "endpoint" and run.manifest["baseline"]["path"] == \
        str(tiny_model_dir)
    rate = run.metric("replay", "win_rate")
    assert (rate["wins"], rate["ties"], rate["losses"]) == (3, 3, 0)  # answers 0, 4 and 5 say GOOD
    assert rate["value"] == pytest.approx(0.75) and rate["ci_low"] < 0.75 < rate["ci_high"]
    assert run.metric("replay", "candidate.json_valid")["value"] == 1.0  # applies to conversation 0 only
    assert run.metric("replay", "candidate.json_valid")["n"] == 1
    assert run.metric("replay", "candidate.tool_call_valid")["value"] == 0.0  # city is required
    assert run.metric("replay", "candidate.refusal")["value"] == pytest.approx(1 / 6)
    assert run.metric("replay", "candidate.empty")["value"] == pytest.approx(1 / 6)
    assert result.sequential["decision"] == "undecided" and result.sequential["n_judged"] == 6

    # a second replay (against the logged answers) pairs with the first in `wb compare` and on the Compare page
    other = replay(None, v1_url(scripted), against_logged=True, endpoint_model="planted", conversations=conversations,
                   judge=_judge(scripted), progress=False).run
    store = Store.open(store_dir)
    assert {run.run_id, other.run_id} <= {m["run_id"] for m in views.comparable_runs(store.list_runs())}
    cmp = compare(run.run_id, other.run_id)
    assert not cmp.setting_differences
    rows = {(r.task, r.metric): r for r in cmp.rows}
    # against the log: 0 wins (JSON saying GOOD), 1, 4 and 5 tie, 2 and 3 (refusal, empty) lose
    assert rows[("replay", "win_rate")].b == pytest.approx(2.5 / 6)
    assert sample_tasks(run, other) == ["replay"] and len(sample_diffs(run, other, "replay")) == 6
    assert significance_verdicts(run, other, cmp)[("replay", "win_rate")].startswith("significantly worse")
    _compare_page_shows(run.run_id, other.run_id)


def _compare_page_shows(a: str, b: str) -> None:
    """The dashboard's Compare page (Streamlit's AppTest) with the two replay runs as A and B."""
    testing = pytest.importorskip("streamlit.testing.v1", reason="needs the dashboard extra")
    from workbench.system.content import content_dir

    at = testing.AppTest.from_file(str(content_dir("dashboards") / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/compare.py")
    at.query_params.update({"a": a, "b": b})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = at.table[0].value
    assert any("win" in str(v) for v in shown.to_numpy().ravel()), shown
    assert f"run `{a}`" in at.caption[0].value.replace("\\", "")


@pytest.mark.slow
def test_on_a_ray_cluster_the_shards_answer_as_this_process_does(tiny_model_dir, scripted, store_dir, monkeypatch):
    """Two Ray workers each load the tiny model once and answer shards of 3; the driver judges them in shard order,
    so the sequential test stops where the local replay stops (9 of 12) and the answers are the same."""
    pytest.importorskip("ray", reason="needs the sweep extra (ray)")
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_worker_niceness", "0")
    conversations = [_conversation(i) for i in range(12)]
    options = {"against_logged": True, "conversations": conversations, "judge": _judge(scripted), "batch": 3,
               "max_new_tokens": 6, "progress": False}
    local = replay(None, str(tiny_model_dir), **options)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                            "object_store_memory": 100 * 2**20})
    try:
        on_ray = replay(None, str(tiny_model_dir), ray=cluster.address, workers=2, **options)
    finally:
        cluster.shutdown()
    assert on_ray.sequential["n_judged"] == local.sequential["n_judged"] == 9
    assert on_ray.run.manifest["executor"]["workers"] == 2 and local.run.manifest["executor"] == {"local": True}
    assert [(s["id"], s["output"]) for s in on_ray.run.samples("replay")] == \
        [(s["id"], s["output"]) for s in local.run.samples("replay")]
    assert on_ray.run.metrics == local.run.metrics


QUESTIONS = ["Why is the sky blue?", "What causes the seasons on Earth?", "How does photosynthesis work in plants?",
             "Why does ice float on water?", "What makes thunder so loud?", "How do vaccines train immunity?",
             "Why do leap years exist?", "What causes ocean tides twice daily?", "How does a rainbow form after rain?",
             "Why does the Moon show phases?"]


def test_wb_replay_of_an_openai_log_gates_with_exit_1(tiny_model_dir, scripted, ws, capsys):
    """The command line end to end, on a log in the canary's (OpenAI request/response) format: the log's ids reach
    the run, the sequential test stops after two batches, and the failed gate exits 1 after the run is written."""
    log = ws.file("canary.jsonl", "".join(json.dumps({
        "id": f"req-{i}", "side": "baseline", "request": {"model": "prod", "messages": [{"role": "user", "content": q}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": f"GOOD: {q}"}}]}}) + "\n"
        for i, q in enumerate(QUESTIONS)))
    judge = ws.file("judge.yaml", f"judge: {{base_url: '{v1_url(scripted)}', model: scripted-judge}}\n")
    gates = ws.file("gates.yaml", "gates:\n  - {task: replay, metric: win_rate.ci_high, min_value: 0.5}\n")
    res = run_cli(["replay", log, "--candidate", tiny_model_dir, "--against-logged", "--judge", judge, "--gates", gates,
                   "--batch", "4", "--max-new-tokens", "6", "--json"], capsys)
    assert res.code == 1, res.stderr
    out = json.loads(res.stdout)
    assert out["sequential"]["decision"] == "candidate worse" and out["sequential"]["n_judged"] == 8
    assert out["gate"]["passed"] is False
    run = Store.open(ws.store).resolve(out["run_id"])
    assert run.manifest["kind"] == "replay" and run.manifest["status"] == "ok"
    assert {s["id"] for s in run.samples("replay")} <= {f"req-{i}" for i in range(10)}


# ---- bad input ---------------------------------------------------------------------------------------------------

@pytest.fixture
def ws(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path, monkeypatch)
    yield workspace
    workspace.close()


def test_a_candidate_that_does_not_resolve_is_refused_before_anything_is_written(ws, capsys):
    log = ws.file("prod.jsonl", json.dumps({"request": {"messages": [{"role": "user", "content": "hi"}]},
                                            "response": {"choices": [{"message": {"content": "GOOD"}}]}}) + "\n")
    missing = ws.root / "no-such-adapter"
    gates = ws.file("gates.yaml", "gates:\n  - {task: replay, metric: accuracy, min_value: 0.5}\n")
    before = snapshot(ws.root)
    res = run_cli(["replay", log, "--candidate", missing, "--against-logged"], capsys)
    assert_refused(res, 3, ("no-such-adapter",), before, ws.root)
    res = run_cli(["replay", log, "--candidate", "default", "--baseline", "default", "--against-logged"], capsys)
    assert_refused(res, 3, ("--against-logged",), before, ws.root)
    res = run_cli(["replay", log, "--candidate", "default", "--against-logged", "--gates", gates], capsys)
    assert_refused(res, 3, ("accuracy",), before, ws.root)

"""MT-Bench against FastChat's own record (the data mirror's mt_bench/: one model's answers and GPT-4's 160
judgments): the judge prompts wb builds equal FastChat's `user_prompt`, the ratings wb parses equal `score`, and
`wb eval --outputs` on those answers, with a loopback judge that replays the recorded judgments, gives the
published mean. Then a real two-turn generation on the default model with the local judge, and bad input."""

import json
import shutil
from pathlib import Path

import pytest
from hostile_support import Workspace, assert_refused, run_cli, snapshot
from loopback import JsonHandler, serving, v1_url

import workbench
from workbench.benchmarks import mt_bench
from workbench.errors import BadInput

MIRROR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def mirror() -> Path:
    import os

    path = Path(os.environ.get("WB_DATA_DIR") or MIRROR)
    if not (path / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl").is_file():
        pytest.skip(f"needs the MT-Bench mirror at {path}/mt_bench (set WB_DATA_DIR)")
    return path


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_prompts_and_ratings_equal_fastchats(mirror):
    items = {it["id"]: it for it in mt_bench.load_items(mirror)}
    prompts = mt_bench.judge_prompts(mirror)
    answers = {str(a["question_id"]): a["choices"][0]["turns"]
               for a in _jsonl(mirror / "mt_bench/model_answer/gemini-1.5-flash.jsonl")}
    judgments = _jsonl(mirror / "mt_bench/model_judgment/gpt-4_single.jsonl")
    same_prompt = same_rating = 0
    for row in judgments:
        item, turn = items[str(row["question_id"])], int(row["turn"])
        system, user = mt_bench.judge_messages(prompts, item, answers[item["id"]], turn)
        assert mt_bench.PROMPT_NAMES[(item["reference"] is not None, turn)] == row["judge"][1], row["question_id"]
        assert system == {"role": "system", "content": prompts[row["judge"][1]]["system_prompt"]}
        same_prompt += user == {"role": "user", "content": row["user_prompt"]}
        same_rating += mt_bench.parse_rating(row["judgment"]) == row["score"]
    assert (len(judgments), same_prompt, same_rating) == (160, 160, 160)


def test_free_text_replies_are_retried_and_cached(tmp_path):
    from test_judge import ScriptedJudge, _client  # its scripted server: 500 twice, then a reply

    from workbench.judge.cache import JudgeCache

    with serving(ScriptedJudge, calls={}, expect_key=None) as server:
        client = _client(v1_url(server), cache=JudgeCache(tmp_path / "cache"))
        messages = [{"role": "system", "content": "judge"}, {"role": "user", "content": "Rate this. MODE:flaky"}]
        first = client.reply(messages)
        assert json.loads(first["content"]) == {"rationale": "fine", "score": 4}
        assert client.reply(messages) == first
        assert client.counters.to_dict() == {"requests": 3, "cache_hits": 1, "retries": 2, "failures": 0}


def test_rating_parse_follows_fastchat():
    assert mt_bench.parse_rating("Rating: [[7]]") == 7
    assert mt_bench.parse_rating("Rating: [[8.5]] then [[2]]") == 8.5
    assert mt_bench.parse_rating("I'd say [6] overall") == 6  # the backup pattern
    assert mt_bench.parse_rating("Rating: 7/10") == -1


class ReplayJudge(JsonHandler):
    """An OpenAI-compatible judge that answers with FastChat's recorded judgment for that exact user prompt."""

    def do_POST(self):
        messages = self.body()["messages"]
        user = next(m["content"] for m in messages if m["role"] == "user")
        with self.server.lock:
            self.server.seen.append(messages)
        self.chat(self.server.judgments.get(user, "I will not give a rating."))


@pytest.fixture
def replay_judge(mirror):
    judgments = {r["user_prompt"]: r["judgment"] for r in _jsonl(mirror / "mt_bench/model_judgment/gpt-4_single.jsonl")}
    with serving(ReplayJudge, judgments=judgments, seen=[]) as server:
        yield server


@pytest.fixture
def ws(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path, monkeypatch)
    yield workspace
    workspace.close()


def _suite(ws: Workspace, judge: dict, generation: str = "") -> Path:
    return ws.file("mt.yaml", "name: mt\ntasks:\n  - name: mt_bench\n    benchmark: mt_bench\n"
                              f"    scorers: [{{type: mt_bench}}]\n{generation}judge: {json.dumps(judge)}\n")


def _metrics(payload: dict) -> dict:
    return {m["metric"]: m for m in payload["metrics"]}


def test_replayed_judgments_give_the_published_mean(mirror, replay_judge, ws, capsys):
    suite = _suite(ws, {"base_url": v1_url(replay_judge), "model": "gpt-4",
                        "concurrency": 8})
    answers = mirror / "mt_bench/model_answer/gemini-1.5-flash.jsonl"
    res = run_cli(["eval", "--outputs", answers, "--suite", suite, "--data-dir", mirror, "--json"], capsys)
    assert res.code == 0, res.stderr
    rows = _jsonl(mirror / "mt_bench/model_judgment/gpt-4_single.jsonl")
    published = {key: [r["score"] for r in rows if r["score"] != -1 and turn in (None, r["turn"])]
                 for key, turn in (("mt_bench", None), ("mt_bench.turn1", 1), ("mt_bench.turn2", 2))}
    metrics = _metrics(payload := json.loads(res.stdout))
    for key, scores in published.items():
        assert metrics[key]["value"] == pytest.approx(sum(scores) / len(scores), abs=1e-9), key
        assert (metrics[key]["n"], metrics[key]["errors"]) == (len(scores), 0)
    assert metrics["mt_bench"]["value"] == pytest.approx(8.76875)
    assert metrics["mt_bench[category=math]"]["breakdown"] == {"key": "category", "value": "math"}
    assert len(replay_judge.seen) == 160
    run = ws.store / "runs" / payload["run_id"]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["outputs"]["path"] == str(answers.resolve()) and len(manifest["outputs"]["sha256"]) == 64
    assert manifest["checkpoint"]["kind"] == "outputs"
    sample = _jsonl(run / "samples" / "mt_bench.jsonl")[0]
    assert len(sample["turns"]) == 2 and sample["messages"][-2] == {"role": "assistant", "content": sample["turns"][0]}


@pytest.mark.slow  # the default model and llama.cpp's judge server: 40 s on 2 cores
def test_two_turns_on_the_default_model_with_the_local_judge(mirror, ws, capsys):
    suite = _suite(ws, {"model": "default", "max_tokens": 256},
                   "    generation: {max_new_tokens: 12}\n")
    res = run_cli(["eval", "default", "--suite", suite, "--data-dir", mirror, "--limit", "2", "--json"], capsys)
    assert res.code == 0, res.stderr
    payload = json.loads(res.stdout)
    samples = _jsonl(ws.store / "runs" / payload["run_id"] / "samples" / "mt_bench.jsonl")
    questions = {str(q["question_id"]): q["turns"] for q in _jsonl(mirror / "mt_bench/question.jsonl")}
    for s in samples:
        assert len(s["turns"]) == 2 and all(isinstance(t, str) for t in s["turns"])
        q1, q2 = questions[s["id"]]
        assert [m["role"] for m in s["messages"]][-3:] == ["user", "assistant", "user"]
        assert s["messages"][-3:] == [{"role": "user", "content": q1}, {"role": "assistant", "content": s["turns"][0]},
                                      {"role": "user", "content": q2}]
        assert [r["turn"] for r in s["judge"]["mt_bench"]["turns"]] == [1, 2]
    metric = _metrics(payload)["mt_bench"]
    ratings = [r.get("rating", -1) for s in samples for r in s["judge"]["mt_bench"]["turns"]]
    # on the local judge the judgment is held to end in FastChat's "[[N]]" (mt_bench.LOCAL_RATING_GRAMMAR)
    assert (metric["n"], metric["errors"]) == (4, 0) and all(1 <= r <= 10 for r in ratings)
    assert metric["value"] == pytest.approx(sum(ratings) / 4)
    manifest = json.loads((ws.store / "runs" / payload["run_id"] / "run.json").read_text())
    assert manifest["judge"]["tasks"]["mt_bench"]["mt_bench"]["rating_grammar"] is True


def test_a_judge_without_a_rating_counts_as_minus_one(mirror, replay_judge, ws, capsys):
    replay_judge.judgments = {}  # every reply lacks a rating
    suite = _suite(ws, {"base_url": v1_url(replay_judge), "model": "gpt-4"})
    answers = ws.file("a.jsonl", "".join(json.dumps({"id": str(i), "output": ["one", "two"]}) + "\n"
                                         for i in (81, 82)))
    res = run_cli(["eval", "--outputs", answers, "--suite", suite, "--data-dir", mirror, "--limit", "2", "--json"],
                  capsys)
    assert res.code == 0, res.stderr
    metric = _metrics(json.loads(res.stdout))["mt_bench"]
    assert (metric["value"], metric["n"], metric["errors"], metric["no_rating"]) == (None, 0, 4, 4)


def test_a_mirror_missing_a_file_is_named(mirror, ws, capsys):
    partial = ws.root / "data"
    shutil.copytree(mirror / "mt_bench", partial / "mt_bench")
    (partial / "mt_bench" / "judge_prompts.jsonl").unlink()
    suite = _suite(ws, {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-4"})
    before = snapshot(ws.root)
    res = run_cli(["eval", "default", "--suite", suite, "--data-dir", partial], capsys)
    assert_refused(res, 3, ("judge_prompts.jsonl", "missing from the data dir"), before, ws.root)


@pytest.mark.parametrize("lines, needles", [
    ('{"id": "999", "output": ["a", "b"]}\n', ("a.jsonl:1", "'999' is not an item")),
    ('{"id": "81", "output": ["a", "b"]}\n', ("a.jsonl", "no answer for item '82'", "(and 78 more)")),
    ('{"id": "81", "output": ["a", "b"]}\nnot json\n', ("a.jsonl:2", "not valid JSON")),
    ('{"id": "81", "output": "only one turn"}\n', ("a.jsonl:1", "has 2 turn(s)", "gives 1")),
    ('{"id": "81", "output": ["a", "b"]}\n{"question_id": 81, "choices": [{"turns": ["a", "b"]}]}\n',
     ("a.jsonl:2", "a second answer for item '81'")),
    ('{"question_id": 81, "choices": []}\n', ("a.jsonl:1", "choices")),
    ('{"output": ["a", "b"]}\n', ("a.jsonl:1", "needs 'id'")),
], ids=["unknown id", "missing ids", "malformed line", "turns", "duplicate", "bad choices", "no id"])
def test_bad_outputs_are_refused(mirror, ws, capsys, lines, needles):
    suite = _suite(ws, {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-4"})
    answers = ws.file("a.jsonl", lines)
    before = snapshot(ws.root)
    res = run_cli(["eval", "--outputs", answers, "--suite", suite, "--data-dir", mirror], capsys)
    assert_refused(res, 3, needles, before, ws.root)


def test_outputs_or_a_checkpoint_not_both(mirror, ws, capsys):
    suite = _suite(ws, {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-4"})
    answers = ws.file("a.jsonl", '{"id": "81", "output": ["a", "b"]}\n')
    before = snapshot(ws.root)
    for argv in (["default", "--outputs", answers], []):
        res = run_cli(["eval", *argv, "--suite", suite, "--data-dir", mirror], capsys)
        assert_refused(res, 2, ("give a CHECKPOINT", "--outputs"), before, ws.root)
    with pytest.raises(BadInput, match="give a CHECKPOINT"):  # the API says the same
        workbench.evaluate(None, str(suite), data_dir=mirror)


def test_outputs_score_any_suite_without_a_model(ws, capsys):
    suite = ws.suite()  # three items "Say i", reference "i", scorer exact
    answers = ws.file("a.jsonl", "".join(json.dumps({"id": str(i), "output": out}) + "\n"
                                         for i, out in enumerate(["0", "1", "nope"])))
    res = run_cli(["eval", "--outputs", answers, "--suite", suite, "--json"], capsys)
    assert res.code == 0, res.stderr
    payload = json.loads(res.stdout)
    assert _metrics(payload)["exact"]["value"] == pytest.approx(2 / 3)
    assert payload["checkpoint"]["kind"] == "outputs"
    limited = run_cli(["eval", "--outputs", ws.file("b.jsonl", '{"id": "0", "output": "0"}\n'), "--suite", suite,
                       "--limit", "1", "--json"], capsys)
    assert limited.code == 0, limited.stderr
    assert _metrics(json.loads(limited.stdout))["exact"]["n"] == 1

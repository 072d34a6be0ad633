"""IFEval through lm-eval's own `ifeval` task, offline (the google/IFEval mirror, punkt_tab from set-up).

- Known answers: hand-made outputs that follow or break specific instructions, served by a local OpenAI-compatible
  server, go through `wb eval URL --tasks ifeval`; the run's stored per-prompt verdicts are the expected ones and
  equal lm-eval's own process_results on the same outputs.
- Reasoning: the ChatFormat learns `<think>` / `</think>` from the template; recorded reasoning outputs driven
  through lm-eval's task with wb's final_answers pass on their answer, not their thinking; a real generation on a
  tiny random model whose template opens the thinking is stripped (never closed: no answer) and recorded so.
- NLTK's punkt_tab missing: exit 4, one line naming it and scripts/setup.sh, nothing downloaded, no run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_support import run_cli
from loopback import JsonHandler, serving, v1_url

# Qwen 3 style: past thinking rendered from reasoning_content, the generation prompt leaves the model to open it
QWEN3_LIKE = (
    "{% for m in messages %}{% if m.role == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% if m.reasoning_content %}{{ '<think>\\n' + m.reasoning_content + '\\n</think>\\n\\n' }}{% endif %}"
    "{{ m.content + '<|im_end|>\\n' }}{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# DeepSeek R1 style: past thinking dropped, the generation prompt opens it
R1_LIKE = (
    "{% for m in messages %}{% if m.role == 'user' %}{{ '<|im_start|>user\\n' + m.content + '<|im_end|>\\n' }}"
    "{% else %}{% set c = m.content %}{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}"
    "{{ '<|im_start|>assistant\\n' + c + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}")

WORDS = " ".join(["history"] * 320)
# The mirror's first four prompts (keys 1000, 1001, 1005, 1012): an answer each, and the strict verdict per instruction
KNOWN = [
    ("Raymond_III", f"*Early life* {WORDS} *The crusades* and *Legacy*", [True, True, True]),
    ("planning a trip to Japan", "Good morrow, fair traveller. Thou shalt see Kyoto.", [False]),
    ("fresh high school graduate", " ".join(f"[field{i}]" for i in range(12)) + " Hard worker.", [True]),
    ("telling him that I am quitting", "<<Resignation>>\nDear boss I quit.", [False, True]),
]


def _ifeval_docs(data_dir: Path, n: int) -> list[dict]:
    with open(data_dir / "ifeval" / "train.jsonl", encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


@pytest.fixture
def ifeval_data(data_dir):
    if not (data_dir / "ifeval" / "train.jsonl").is_file():
        pytest.skip(f"needs the IFEval mirror at {data_dir}/ifeval")
    return data_dir


@pytest.fixture
def replay_server():
    """An OpenAI-compatible server that answers each IFEval prompt with its KNOWN output."""

    class Handler(JsonHandler):
        def do_GET(self):
            self.send_json({"object": "list", "data": [{"id": "replay", "object": "model"}]})

        def do_POST(self):
            asked = self.body()
            prompt = asked["prompt"] if isinstance(asked["prompt"], str) else asked["prompt"][0]
            text = next(out for needle, out, _ in KNOWN if needle in prompt)
            self.send_json({"object": "text_completion", "model": "replay",
                            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]})

    with serving(Handler) as server:
        yield v1_url(server)


@pytest.mark.slow  # wb eval end to end (a server / a child process)
def test_known_answers_get_lm_eval_s_verdicts_in_the_stored_run(replay_server, ifeval_data, tmp_path, capsys):
    from lm_eval.tasks.ifeval.utils import process_results

    from workbench.store import Store

    store = tmp_path / "store"
    res = run_cli(["eval", replay_server, "--endpoint-model", "replay", "--tasks", "ifeval", "--limit", len(KNOWN),
                   "--data-dir", ifeval_data, "--store", store, "--json"], capsys)
    assert res.code == 0, res.stderr
    run = Store.open(store).load(json.loads(res.stdout)["run_id"])
    assert run.manifest["harness"][0]["sources"]["ifeval"]["source"] == "mirror"
    samples = {s["doc_id"]: s for s in run.samples("lm-eval.ifeval")}
    docs = _ifeval_docs(ifeval_data, len(KNOWN))
    for i, ((_, output, expected), doc) in enumerate(zip(KNOWN, docs)):
        stored = samples[i]
        assert stored["doc"]["key"] == doc["key"] and stored["filtered"] == output
        assert stored["metrics"]["inst_level_strict_acc"] == expected, (doc["key"], stored["metrics"])
        assert stored["metrics"]["prompt_level_strict_acc"] == all(expected)
        assert stored["metrics"] == process_results(doc, [output])  # lm-eval's own verdicts, loose ones too
    metrics = {m["metric"]: m["value"] for m in json.loads(res.stdout)["metrics"]}
    assert metrics["prompt_level_strict_acc"] == pytest.approx(2 / 4)
    assert metrics["inst_level_strict_acc"] == pytest.approx(5 / 7)


def _chat_format(tiny_model_dir, template: str):
    from transformers import AutoTokenizer

    from workbench.chat.format import from_tokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = template
    return from_tokenizer(tok)


def test_the_chat_format_learns_the_thinking_markers(tiny_model_dir):
    qwen, r1 = _chat_format(tiny_model_dir, QWEN3_LIKE), _chat_format(tiny_model_dir, R1_LIKE)
    assert qwen.reasoning_markers() == {"start": "<think>", "end": "</think>", "opened_by_prompt": False}
    assert r1.reasoning_markers() == {"start": "<think>", "end": "</think>", "opened_by_prompt": True}
    assert _chat_format(tiny_model_dir, None).reasoning_markers() is None
    closed = "<think>\nhmm, commas\n</think>\n\nAnswer here"
    assert qwen.strip_reasoning(closed) == ("Answer here", len(closed) - len("Answer here"))
    assert qwen.strip_reasoning("plain answer") == ("plain answer", 0)  # Qwen 3 may answer without thinking
    assert qwen.strip_reasoning("<think> cut by the token limit") == ("", len("<think> cut by the token limit"))
    assert r1.strip_reasoning("still thinking") == ("", len("still thinking"))  # the prompt opened it
    assert r1.strip_reasoning("so, yes\n</think>\nNo commas") == ("No commas", len("so, yes\n</think>\n"))


def test_reasoning_outputs_are_scored_on_their_final_answer(tiny_model_dir, ifeval_data):
    """Recorded outputs through lm-eval's ifeval task with wb's final_answers: the thinking breaks the instruction,
    the answer follows it."""
    from lm_eval import evaluator
    from lm_eval.api.model import LM
    from lm_eval.tasks.ifeval.utils import process_results

    from workbench.eval.harness import final_answers, prepare_tasks, sample_record

    thinking_with_commas = "<think>\nNo commas, they said, so I will not use any.\n</think>\n\n"
    recorded = {
        # key 1000: the thinking alone would pass all three instructions; it never closes, so there is no answer
        "Raymond_III": f"<think>\n*Early life* {WORDS} *The crusades* and *Legacy*",
        # key 1001: the thinking has commas, the answer none
        "planning a trip to Japan": thinking_with_commas + "Good morrow fair traveller. Thou shalt see Kyoto.",
    }

    class Recorded(LM):
        def generate_until(self, requests, disable_tqdm=False):
            return [next(out for needle, out in recorded.items() if needle in r.args[0]) for r in requests]

        def loglikelihood(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

    prepared = prepare_tasks(["ifeval"], data_dir=ifeval_data)
    lm = Recorded()
    with final_answers(lm, _chat_format(tiny_model_dir, QWEN3_LIKE)) as stripped:
        results = evaluator.simple_evaluate(model=lm, tasks=prepared.built, task_manager=prepared.manager, limit=2,
                                            log_samples=True)
    assert "generate_until" not in vars(lm)  # handed back as it was
    records = {r["doc"]["key"]: r for r in (sample_record(s, "generate_until", stripped)
                                            for s in results["samples"]["ifeval"])}
    docs = {d["key"]: d for d in _ifeval_docs(ifeval_data, 2)}
    raw_1000, raw_1001 = recorded["Raymond_III"], recorded["planning a trip to Japan"]

    assert process_results(docs[1000], [raw_1000])["prompt_level_strict_acc"] is True  # what grading thinking gives
    assert records[1000]["filtered"] == "" and records[1000]["reasoning_stripped_chars"] == len(raw_1000)
    assert records[1000]["metrics"]["inst_level_strict_acc"] == [False, False, False]

    assert process_results(docs[1001], [raw_1001])["prompt_level_strict_acc"] is False
    answer = "Good morrow fair traveller. Thou shalt see Kyoto."
    assert records[1001]["filtered"] == answer
    assert records[1001]["reasoning_stripped_chars"] == len(thinking_with_commas)
    assert records[1001]["metrics"] == process_results(docs[1001], [answer])
    assert records[1001]["metrics"]["prompt_level_strict_acc"] is True


def test_a_real_generation_on_a_thinking_template_is_stripped(tiny_model_dir, ifeval_data, tmp_path):
    """The tiny random model under transformers, its template opening `<think>`: it never writes `</think>` in 12
    tokens, so each answer is empty and the run records the thinking it stripped."""
    import shutil

    from transformers import AutoTokenizer

    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.eval.harness import run_harness

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny-r1"))
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.chat_template = R1_LIKE
    tok.save_pretrained(folder)
    result = run_harness(resolve_checkpoint(str(folder)), ["ifeval"], data_dir=ifeval_data, limit=2,
                         apply_chat_template=True, gen_kwargs={"max_gen_toks": 12}, backend="hf", device="cpu",
                         batch_size=2, use_cache=False)
    assert result.settings["reasoning"] == {"start": "<think>", "end": "</think>", "opened_by_prompt": True}
    samples = result.samples["ifeval"]
    assert len(samples) == 2
    for s in samples:
        assert s["prompt"].endswith("<|im_start|>assistant\n<think>\n")  # lm-eval rendered the template
        assert s["responses"] == [""] and s["filtered"] == ""
        assert s["reasoning_stripped_chars"] > 0  # twelve generated tokens of thinking
        assert s["metrics"]["prompt_level_strict_acc"] is False


@pytest.mark.slow  # wb eval end to end (a server / a child process)
def test_missing_punkt_tab_is_exit_4_in_one_line(ifeval_data, tmp_path):
    empty, store = tmp_path / "nltk-empty", tmp_path / "store"
    empty.mkdir()
    child = ("import sys, nltk; nltk.data.path[:] = [sys.argv[1]]; from workbench.cli.main import main; "
             "sys.exit(main(sys.argv[2:]))")
    res = subprocess.run(
        [sys.executable, "-c", child, str(empty), "eval", "default", "--tasks", "ifeval", "--limit", "1",
         "--data-dir", str(ifeval_data), "--store", str(store)],
        check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "NLTK_DATA": str(empty)})
    assert res.returncode == 4, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "punkt_tab" in lines[0] and "scripts/setup.sh" in lines[0] and "ifeval" in lines[0]
    assert not any(empty.iterdir())  # nothing was downloaded
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


@pytest.mark.parametrize("row", [None, '{"key": 1, "prompt": "Say hi."}\n'], ids=["no-file", "not-the-schema"])
def test_a_bad_ifeval_mirror_is_exit_3_naming_the_file(row, tmp_path, capsys):
    from hostile_support import assert_refused, snapshot

    mirror = tmp_path / "data"
    (mirror / "ifeval").mkdir(parents=True)
    if row is not None:
        (mirror / "ifeval" / "train.jsonl").write_text(row)
    before = snapshot(tmp_path)
    res = run_cli(["eval", "default", "--tasks", "ifeval", "--limit", "1", "--data-dir", mirror,
                   "--store", tmp_path / "store"], capsys)
    needles = ("ifeval/train.jsonl",) + (("google/IFEval",) if row is None else ("instruction_id_list", "kwargs"))
    assert_refused(res, 3, needles, before, tmp_path)

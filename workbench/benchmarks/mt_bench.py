"""MT-Bench (Zheng et al. 2023, FastChat's llm_judge) as a suite task: the 80 two-turn questions of the data
mirror's `mt_bench/` folder, answered turn by turn by the checkpoint (the second turn sees its own first answer,
at FastChat's per-category temperature), and graded as FastChat's single-answer grading does: the official judge
prompts (the math variants, with GPT-4's reference answers, for math, reasoning and coding; the multi-turn
variants for turn 2), the rating parsed by FastChat's `[[rating]]` pattern and its backup (-1 when neither
matches), the score the mean of the valid ratings (FastChat's show_result)."""

import re
from pathlib import Path

from workbench import benchmarks
from workbench.errors import BadInput
from workbench.eval import breakdown
from workbench.judge.client import JudgeClient, JudgeFailure
from workbench.judge.reliability import length_correlation
from workbench.system import home
from workbench.system.user_files import json_lines

FOLDER = "mt_bench"
QUESTIONS = "question.jsonl"
REFERENCES = "reference_answer/gpt-4.jsonl"
JUDGE_PROMPTS = "judge_prompts.jsonl"

# gen_model_answer.py's temperature_config; max_new_token 1024 (a suite's own generation settings win)
TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0, "reasoning": 0.0,
                "stem": 0.1, "humanities": 0.1}
MAX_NEW_TOKENS = 1024
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")  # common.py's
# the judge prompt per (needs a reference, turn): gen_judgment.py's make_judge_single
PROMPT_NAMES = {(False, 1): "single-v1", (True, 1): "single-math-v1", (False, 2): "single-v1-multi-turn",
                (True, 2): "single-math-v1-multi-turn"}
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def metric_names(label: str) -> list[str]:
    """The metrics an mt_bench scorer reports (before breakdowns): the MT-Bench score and its two turns."""
    return [label, f"{label}.turn1", f"{label}.turn2"]


def mirror_file(data_dir: Path | None, relpath: str) -> Path:
    return benchmarks.mirror_file(FOLDER, data_dir, relpath, "FastChat's llm_judge/data/mt_bench layout")


def _rows(path: Path, keys: tuple[str, ...]) -> list[dict]:
    rows = []
    for _, where, row in json_lines(path):
        if not isinstance(row, dict) or any(k not in row for k in keys):
            raise BadInput(f"{where}: expected a JSON object with {', '.join(keys)}")
        rows.append(row)
    if not rows:
        raise BadInput(f"{path}: no rows")
    return rows


def references(data_dir: Path | None) -> dict[str, list[str]]:
    """question id -> GPT-4's reference answer per turn."""
    out = {}
    for row in _rows(mirror_file(data_dir, REFERENCES), ("question_id", "choices")):
        turns = (row["choices"] or [{}])[0].get("turns") if isinstance(row["choices"], list) else None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise BadInput(f"{mirror_file(data_dir, REFERENCES)}: question {row['question_id']}: choices[0].turns "
                           "is not a list of strings")
        out[str(row["question_id"])] = turns
    return out


def judge_prompts(data_dir: Path | None) -> dict[str, dict]:
    """The four single-answer judge prompts by name, each with its system_prompt and prompt_template."""
    path = mirror_file(data_dir, JUDGE_PROMPTS)
    found = {row["name"]: row for row in _rows(path, ("name", "system_prompt", "prompt_template", "output_format"))}
    missing = [n for n in PROMPT_NAMES.values() if n not in found]
    if missing:
        raise BadInput(f"{path}: no judge prompt named {', '.join(missing)}")
    return found


def load_items(data_dir: Path | None) -> list[dict]:
    """The 80 questions as chat items: the first turn as the conversation, the second as a follow-up; the category
    in metadata (so `breakdown: [category]` works) with the questions' turns; GPT-4's reference answers (math,
    reasoning and coding) as the reference. Every file grading needs is checked here, before any model loads."""
    refs = references(data_dir)
    judge_prompts(data_dir)
    path = mirror_file(data_dir, QUESTIONS)
    items = []
    for row in _rows(path, ("question_id", "category", "turns")):
        turns, category, qid = row["turns"], row["category"], str(row["question_id"])
        if not isinstance(turns, list) or len(turns) != 2 or not all(isinstance(t, str) for t in turns):
            raise BadInput(f"{path}: question {qid}: turns must be two strings")
        needs_ref = category in NEED_REF_CATS
        if needs_ref and qid not in refs:
            raise BadInput(f"{mirror_file(data_dir, REFERENCES)}: no reference answer for question {qid} "
                           f"({category})")
        generation = {"max_new_tokens": MAX_NEW_TOKENS}
        if category in TEMPERATURES:
            generation["temperature"] = TEMPERATURES[category]
        items.append({"id": qid, "messages": [{"role": "user", "content": turns[0]}], "followups": turns[1:],
                      "reference": refs[qid] if needs_ref else None, "tags": [],
                      "metadata": {"category": category, "turns": turns}, "generation": generation})
    return items


def judge_messages(prompts: dict[str, dict], item: dict, answers: list[str], turn: int) -> list[dict]:
    """The judge's conversation for `turn` (1 or 2) of an item's answers, as FastChat's run_judge_single builds
    it: the prompt's system_prompt as the system message, its prompt_template filled as the user message."""
    needs_ref = item["reference"] is not None
    prompt = prompts[PROMPT_NAMES[(needs_ref, turn)]]
    questions = item["metadata"]["turns"]
    fields = {}
    if needs_ref:
        fields["ref_answer_1"] = item["reference"][0]
        if turn == 2:
            fields["ref_answer_2"] = item["reference"][1]
    if turn == 2:
        user = prompt["prompt_template"].format(question_1=questions[0], question_2=questions[1],
                                                answer_1=answers[0], answer_2=answers[1], **fields)
    else:
        user = prompt["prompt_template"].format(question=questions[0], answer=answers[0], **fields)
    return [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": user}]


# A small local judge rarely ends its judgment in FastChat's "[[N]]" (the embedded 135M model: never, in our runs).
# On wb's local llama.cpp judge the reply is held by this grammar to free text then "Rating: [[N]]"; the prompt
# and the parse stay FastChat's. An endpoint's reply is never constrained (FastChat's behaviour exactly).
LOCAL_RATING_GRAMMAR = """root ::= text "Rating: [[" rating "]]"
text ::= [^[]{0,600}
rating ::= [1-9] | "10"
"""


def parse_rating(judgment: str) -> float:
    """FastChat's rating: `[[N]]`, else `[N]`, else -1."""
    match = ONE_SCORE.search(judgment) or ONE_SCORE_BACKUP.search(judgment)
    return float(match.groups()[0]) if match else -1


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def grade(client: JudgeClient, label: str, samples: list[dict], items: list[dict], data_dir: Path | None,
          progress=None) -> tuple[list[tuple], dict]:
    """Rates every turn of every sample (`sample["turns"]`, the answers), adds the records and per-sample scores
    to the samples, and returns (metrics, reliability) as judge scorers do. `label` is FastChat's MT-Bench score:
    the mean of all valid ratings, both turns; `label.turnN` per turn; `label[category=C]` per category. A
    sample's own `label` score is the mean of its valid ratings, so paired statistics pair questions. A rating
    of -1 (no rating in the judgment) or a failed judge call is an error of the metric, not a score."""
    prompts = judge_prompts(data_dir or home.data_dir())  # `wb judge` re-grades with WB_DATA_DIR's mirror
    settings = {"grammar": LOCAL_RATING_GRAMMAR} if client.local else None
    by_id = {it["id"]: it for it in items}
    jobs = [(s, turn) for s in samples for turn in range(1, len(s["turns"]) + 1)]

    def rate(job) -> dict:
        sample, turn = job
        item = by_id[sample["id"]]
        record = {"turn": turn, "prompt": PROMPT_NAMES[(item["reference"] is not None, turn)]}
        try:
            judgment = client.reply(judge_messages(prompts, item, sample["turns"], turn), settings)["content"]
        except JudgeFailure as exc:
            return {**record, "error": str(exc)}
        return {**record, "judgment": judgment, "rating": parse_rating(judgment)}

    done = client.map(rate, jobs, progress.task(f"judge {label}", total=len(jobs)) if progress else None)
    valid = [(job, rec) for job, rec in zip(jobs, done) if rec.get("rating", -1) != -1]
    for sample in samples:
        records = [rec for (s, _), rec in zip(jobs, done) if s is sample]
        ratings = [r["rating"] for r in records if r.get("rating", -1) != -1]
        sample.setdefault("judge", {})[label] = {"turns": records}
        sample["scores"][label] = _mean(ratings)
        for rec in records:
            sample["scores"][f"{label}.turn{rec['turn']}"] = rec["rating"] if rec.get("rating", -1) != -1 else None
    no_rating = sum(rec.get("rating") == -1 for rec in done)
    failed = sum("error" in rec for rec in done)
    extra = {"scale": [1, 10], "no_rating": no_rating, "failed_calls": failed}
    metrics = [(label, [rec["rating"] for _, rec in valid], len(done) - len(valid), extra)]
    for turn in sorted({t for _, t in jobs}):
        turn_jobs = [rec for (_, t), rec in zip(jobs, done) if t == turn]
        ratings = [rec["rating"] for (_, t), rec in valid if t == turn]
        metrics.append((f"{label}.turn{turn}", ratings, len(turn_jobs) - len(ratings), {"scale": [1, 10]}))
    for category in sorted({by_id[s["id"]]["metadata"]["category"] for s in samples}):
        in_cat = [rec for (s, _), rec in zip(jobs, done) if by_id[s["id"]]["metadata"]["category"] == category]
        ratings = [rec["rating"] for rec in in_cat if rec.get("rating", -1) != -1]
        metrics.append((breakdown.metric_name(label, "category", category), ratings, len(in_cat) - len(ratings),
                        {"scale": [1, 10], "breakdown": {"key": "category", "value": category}}))
    reliability = {"kind": "rubric", "n": len(done), "rating_grammar": settings is not None, "errors": len(done) - len(valid), "no_rating": no_rating,
                   "length_correlation": length_correlation([rec["rating"] for _, rec in valid],
                                                            [s["turns"][t - 1] for (s, t), _ in valid])}
    return metrics, reliability

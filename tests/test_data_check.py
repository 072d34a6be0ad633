"""`wb data check`: training-data formats, duplicates, token lengths, rendered samples and contamination."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.data.contamination import EvalItem, NgramIndex, words
from workbench.data.formats import load_rows
from workbench.errors import BadInput

REPO = Path(__file__).resolve().parent.parent
CONTACTS_TRAIN = REPO / "evals" / "data" / "contacts_train.jsonl"


def wb(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=timeout)


def _reworded(question: str) -> str:
    """Lightly reworded, as a copy-edited leak would be: the first number changed, 'the' -> 'a' once, one word cut."""
    q = re.sub(r"\d+", lambda m: str(int(m.group()) + 3), question, count=1)
    q = re.sub(r"\bthe\b", "a", q, count=1)
    ws = q.split()
    return " ".join(ws[:3] + ws[4:])


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def planted(data_dir, module_tmp):
    """The contacts training rows with 5 GSM8K test questions, reworded, planted at known lines."""
    gsm = [json.loads(l) for l in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()]
    picks = [i for i, row in enumerate(gsm) if len(row["question"].split()) >= 40][:50:10]  # 5 long questions
    rows = [json.loads(l) for l in CONTACTS_TRAIN.read_text().splitlines()]
    for k, gi in enumerate(picks):
        pos = 20 + 47 * k
        rows.insert(pos, {"id": f"planted-{k}", "messages": [{"role": "user", "content": _reworded(gsm[gi]["question"])}],
                          "reference": "Let me think step by step."})
    path = _write_jsonl(module_tmp("planted") / "train.jsonl", rows)
    lines = {r["id"]: i + 1 for i, r in enumerate(rows)}
    expected = {lines[f"planted-{k}"]: f"gsm8k/test.jsonl:{gi + 1}" for k, gi in enumerate(picks)}
    return path, expected


def test_planted_gsm8k_questions_are_listed_exactly(planted, data_dir):
    path, expected = planted
    res = wb("data", "check", str(path), "--against", "demo", "--against", "gsm8k", "--template", "none",
             "--data-dir", str(data_dir), "--json")
    assert res.returncode == 1, res.stderr[-2000:]  # contaminated: the gate fails
    report = json.loads(res.stdout)
    c = report["contamination"]
    flagged = {h["line"]: h["eval_item"] for h in c["hits"]}
    assert flagged == expected, (flagged, expected)
    # (the contacts rows share the task's instruction with every contacts test item: not a leak, not flagged)
    assert c["contaminated_rows"] == 5 and c["ngram"] == 13
    assert "5 rows share 13-grams" in res.stderr


def test_exact_match_misses_what_ngrams_find(planted, data_dir):
    from workbench.data.contamination import exact_matches
    from workbench.data.eval_sources import gsm8k_items

    path, expected = planted
    _, rows = load_rows(path)
    items = gsm8k_items(data_dir)
    assert exact_matches(items, [r.text() for r in rows]) == []
    report = NgramIndex(items).check([r.text() for r in rows])
    assert {rows[h.row].line for h in report.hits} == set(expected)


def test_clean_data_passes_and_short_items_are_counted(data_dir):
    res = wb("data", "check", str(CONTACTS_TRAIN), "--against", "mmlu_anatomy", "--template", "none",
             "--data-dir", str(data_dir), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    c = json.loads(res.stdout)["contamination"]
    assert c["contaminated_rows"] == 0 and c["eval_items"] == 135 and 0 < c["unchecked_short_items"] < 135


def test_ngram_index_lists_the_overlapping_item():
    items = [EvalItem("a:1", "the cat sat on the mat while the dog slept by the warm fire in the old house"),
             EvalItem("b:1", "an entirely different sentence with many words that goes on and on for a while longer")]
    rows = ["intro text: The cat sat on the mat, while the dog slept by the warm fire in the old house!", "clean"]
    report = NgramIndex(items, n=13).check(rows)
    assert [(h.row, h.item.source) for h in report.hits] == [(0, "a:1")]
    assert report.hits[0].shared == len(words(items[0].text)) - 13 + 1


def test_text_most_eval_items_share_is_left_out_as_template():
    boiler = "please answer with a single word and nothing else at all in the reply box below"
    items = [EvalItem(f"t:{i}", f"item {i} asks about topic {i} {boiler} thanks {i}") for i in range(12)]
    index = NgramIndex(items, n=13, max_items_per_ngram=10)
    assert index.template_ngrams >= len(boiler.split()) - 13 + 1
    assert NgramIndex(items, n=13).check([boiler]).hits == []
    assert NgramIndex(items, n=13, max_items_per_ngram=20).check([boiler]).hits  # kept when fewer share it


FORMAT_ROWS = {
    "messages": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    "sharegpt": {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
    "alpaca": {"instruction": "hi", "input": "", "output": "hello"},
    "prompt_completion": {"prompt": "hi", "completion": "hello"},
    "preference": {"prompt": "hi", "chosen": "hello", "rejected": "go away"},
}


@pytest.mark.parametrize("fmt", sorted(FORMAT_ROWS))
def test_formats_are_detected_and_read_as_conversations(fmt, tmp_path):
    detected, rows = load_rows(_write_jsonl(tmp_path / "d.jsonl", [FORMAT_ROWS[fmt]] * 2))
    assert detected == fmt and len(rows) == 2
    row = rows[0]
    assert row.messages[0] == {"role": "user", "content": "hi"}
    if fmt == "preference":
        assert row.chosen == [{"role": "assistant", "content": "hello"}]
        assert row.rejected == [{"role": "assistant", "content": "go away"}]
    else:
        assert row.messages[-1] == {"role": "assistant", "content": "hello"}


@pytest.mark.parametrize("bad, needle", [
    ({"prompt": "hi", "chosen": "a"}, ":2: rejected: missing"),
    ({"conversations": [{"from": "robot", "value": "x"}]}, ":2: conversations.0: expected {from:"),
    ({"instruction": "hi", "output": 3}, ":2: output: expected a string"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, ":2: messages.0: expected {role, content}"),
])
def test_a_bad_row_is_named_by_file_line_and_field(bad, needle, tmp_path):
    first = {k: v for k, v in FORMAT_ROWS["preference"].items()} if "chosen" in bad else None
    if "conversations" in bad:
        first = FORMAT_ROWS["sharegpt"]
    elif "instruction" in bad:
        first = FORMAT_ROWS["alpaca"]
    elif "messages" in bad:
        first = FORMAT_ROWS["messages"]
    path = _write_jsonl(tmp_path / "bad.jsonl", [first, bad])
    with pytest.raises(BadInput, match=re.escape(needle)):
        load_rows(path)


def test_unknown_rows_and_bad_bytes_are_one_line_errors(tmp_path):
    odd = _write_jsonl(tmp_path / "odd.jsonl", [{"text": "x"}])
    res = wb("data", "check", str(odd), "--template", "none")
    assert res.returncode == 3 and res.stderr.count("\n") == 1 and "odd.jsonl:1: unknown row format" in res.stderr
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(FORMAT_ROWS["alpaca"]).encode() + b"\n" + b'{"instruction": "caf\xe9"}\n')
    res = wb("data", "check", str(latin), "--template", "none")
    assert res.returncode == 3 and "latin.jsonl:2: not UTF-8" in res.stderr and "Traceback" not in res.stderr


def test_duplicates_lengths_and_rendered_samples(tmp_path, default_ckpt):
    base = ("Please summarize the following meeting notes about the quarterly budget review, the hiring plan for "
            "the data team and the office move scheduled for the spring, and list every open question with its owner")
    rows = [{"prompt": f"question number {i}: what is {i} plus {i}?", "completion": f"{2 * i}"} for i in range(30)]
    rows += [{"prompt": base, "completion": "ok"}, {"prompt": base, "completion": "ok"},  # exact duplicates
             {"prompt": base.replace("spring", "summer"), "completion": "ok"},  # a near duplicate
             {"prompt": "word " * 1500, "completion": "long"}]  # a length outlier
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    res = wb("data", "check", str(path), "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["format"] == "prompt_completion" and report["rows"] == 34
    assert report["exact_duplicates"] == [[31, 32]]
    assert [31, 33] in report["near_duplicates"]
    lengths = report["lengths"]
    assert lengths["outliers"][0]["line"] == 34 and lengths["outliers"][0]["tokens"] > 1500
    assert len(report["rendered"]) == 5 and all("<|im_start|>user" in r["text"] for r in report["rendered"])


def _recipe(tmp_path: Path, base: Path, rows: list[dict], against: str) -> Path:
    _write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: leak\nbase: {base}\ntrain_data: train.jsonl\ndata_checks:\n  against: [{against}]\n"
                      "training: {max_steps: 1, batch_size: 2, logging_steps: 1, max_length: 64}\n")
    return recipe


def test_train_refuses_contaminated_rows_before_any_model_loads(tmp_path, tiny_model_dir, store_dir):
    leak = json.loads(next(l for l in (REPO / "evals/data/contacts_test.jsonl").read_text().splitlines()))
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Say {i}."}], "reference": f"{i}"}
            for i in range(6)] + [leak]
    recipe = _recipe(tmp_path, tiny_model_dir, rows, "contacts")
    res = wb("train", str(recipe), "-o", str(tmp_path / "out"))
    assert res.returncode == 3, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "1 rows share 13-grams with contacts (lines 7)" in lines[0], lines
    assert "--allow-contamination" in lines[0]
    assert not (tmp_path / "out").exists() and not (store_dir / "runs").exists()

    res = wb("train", str(recipe), "-o", str(tmp_path / "out"), "--allow-contamination", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    from workbench.store import Store

    run = Store(store_dir).load(json.loads(res.stdout)["run_id"])
    assert run.manifest["data_checks"]["contaminated_lines"] == [7] and run.manifest["data_checks"]["allowed"]

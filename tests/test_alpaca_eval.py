"""AlpacaEval 2.0 (workbench.benchmarks.alpaca_eval and the alpaca_eval scorer): the official annotations give the
leaderboard's win rates through wb's code path; AlpacaEval's own annotator against a loopback endpoint; a real run
of the default model judged by the local judge; bad input refused in one line."""

import csv
import gzip
import json
import math
from pathlib import Path
from typing import ClassVar

import pytest
from hostile_support import run_cli, snapshot
from loopback import JsonHandler, serving, v1_url

from workbench.benchmarks import alpaca_eval as ae

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDER = MIRROR / "alpaca_eval"
ANNOTATIONS = sorted((FOLDER / "annotations").glob("*.json.gz")) if FOLDER.is_dir() else []
LOCAL = "{model: default}"
needs_mirror = pytest.mark.skipif(not FOLDER.is_dir(), reason=f"needs the AlpacaEval mirror at {FOLDER}")


def _leaderboard() -> dict[str, dict]:
    """Leaderboard rows by the results folder their `samples` URL names (the annotation files' names)."""
    with open(FOLDER / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv", newline="") as f:
        return {r["samples"].split("/results/")[1].split("/")[0]: r for r in csv.DictReader(f)
                if "/results/" in r["samples"]}


def _wb_rates(path: Path) -> dict:
    """The official preferences as wb's per-sample records, through the code the scorer runs."""
    rows = json.loads(gzip.decompress(path.read_bytes()))
    records = [{"index": i, "instruction": r["instruction"], "output": r["output_2"],
                "baseline_output": r["output_1"], "preference": r["preference"]} for i, r in enumerate(rows)]
    assert {r["generator_1"] for r in rows} == {ae.REFERENCE}
    return ae.win_rates(ae.annotation_rows(records, rows[0]["generator_2"], ae.REFERENCE), data_dir=MIRROR)


@needs_mirror
@pytest.mark.parametrize("path", ANNOTATIONS, ids=lambda p: p.name.removesuffix(".json.gz"))
def test_official_annotations_give_the_leaderboard_win_rate(path):
    row = _leaderboard()[path.name.removesuffix(".json.gz")]
    rates = _wb_rates(path)
    print(f"{path.name}: leaderboard win rate {float(row['win_rate']):.2f} LC "
          f"{float(row['length_controlled_winrate']):.2f}; wb win rate {rates['win_rate']:.2f} LC "
          f"{rates.get('length_controlled_winrate', 'absent: ' + rates.get('length_controlled_skipped', ''))}")
    assert rates["n_total"] == 805
    assert abs(rates["win_rate"] - float(row["win_rate"])) < 0.5
    if "length_controlled_winrate" in rates:
        assert abs(rates["length_controlled_winrate"] - float(row["length_controlled_winrate"])) < 0.5
    else:
        assert ae.df_gamed_path(MIRROR) is None and ae.DF_GAMED in rates["length_controlled_skipped"]


@needs_mirror
def test_length_controlled_win_rates_equal_the_leaderboard():
    if ae.df_gamed_path(MIRROR) is None:
        pytest.skip(f"no {ae.DF_GAMED} in {FOLDER} or the Hugging Face cache (alpaca-eval's instruction "
                    "difficulties; the mirror does not hold it and wb never downloads it)")
    board = _leaderboard()
    for path in ANNOTATIONS:
        rates = _wb_rates(path)
        want = float(board[path.name.removesuffix(".json.gz")]["length_controlled_winrate"])
        assert abs(rates["length_controlled_winrate"] - want) < 0.5, path.name


@needs_mirror
def test_items_are_the_805_instructions_with_the_reference_answers():
    items = ae.load_items(MIRROR)
    rows = json.loads((FOLDER / ae.OUTPUTS).read_text())
    assert len(items) == len(rows) == 805
    assert [it["messages"] for it in items[:3]] == [[{"role": "user", "content": r["instruction"]}] for r in rows[:3]]
    assert items[7]["reference"] == rows[7]["output"]
    assert items[7]["metadata"] == {"dataset": rows[7]["dataset"], "index": 7, "generator": ae.REFERENCE}


def _synthetic_df_gamed(path: Path, n: int) -> None:
    """A file in df_gamed.csv's format (its columns, two gamed baselines) with made-up numbers: it shows where wb
    finds the file and that alpaca-eval's GLM runs on it, never a leaderboard figure."""
    lines = ["model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for model, sign in (("gamed_long", 1), ("gamed_short", -1)):
        lines += [f"{model},{i},{0.5 + sign * 0.3},{sign * 1.0},{(i % 7 - 3) / 3},False" for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _rows(n: int) -> list[dict]:
    return [{"index": i, "instruction": f"q{i}", "output": "a" * (5 + 7 * (i % 5)), "baseline_output": "b" * 20,
             "preference": 1.0 + (i % 5) / 4} for i in range(n)]


@pytest.mark.parametrize("where", ["mirror", "hf cache"])
def test_df_gamed_is_read_from_the_mirror_or_the_hf_cache_never_downloaded(tmp_path, monkeypatch, where):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    mirror = tmp_path / "mirror"
    if where == "mirror":
        target = mirror / ae.FOLDER / ae.DF_GAMED
    else:
        repo = tmp_path / "hub" / "datasets--tatsu-lab--alpaca_eval"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        target = repo / "snapshots" / ("0" * 40) / ae.DF_GAMED
    _synthetic_df_gamed(target, 40)
    from alpaca_eval.metrics import glm_winrate

    def no_download(*args, **kwargs):
        raise AssertionError(f"alpaca-eval tried the hub: {args} {kwargs}")

    monkeypatch.setattr(glm_winrate, "hf_hub_download", no_download)
    rates = ae.win_rates(ae.annotation_rows(_rows(40), "m", "b"), data_dir=mirror, length_controlled=True)
    assert rates["df_gamed"] == str(target) and glm_winrate.hf_hub_download is no_download
    assert 0 <= rates["length_controlled_winrate"] <= 100 and rates["lc_standard_error"] > 0
    assert sorted(rates["glm_preference"]) == list(range(40))
    assert rates["win_rate"] == pytest.approx(100 * sum((1 + (i % 5) / 4) - 1 for i in range(40)) / 40)


def test_length_controlled_true_without_df_gamed_is_exit_4(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    rows = [{"index": i, "instruction": f"q{i}", "output": "a" * i, "baseline_output": "b",
             "preference": 1.5 + (i % 2) / 2} for i in range(6)]
    from workbench.errors import EnvironmentProblem

    rates = ae.win_rates(ae.annotation_rows(rows, "m", "b"), data_dir=tmp_path)
    assert "length_controlled_winrate" not in rates and ae.DF_GAMED in rates["length_controlled_skipped"]
    with pytest.raises(EnvironmentProblem, match=ae.DF_GAMED) as err:
        ae.win_rates(ae.annotation_rows(rows, "m", "b"), data_dir=tmp_path, length_controlled=True)
    assert err.value.exit_code == 4


# ---- AlpacaEval's own annotator against a loopback OpenAI-compatible endpoint -------------------------------------

class Annotator(JsonHandler):
    """Prefers the output shown second ("M") with probability 0.8; top_logprobs only when `logprobs` is on."""
    bodies: ClassVar[list] = []
    logprobs = True

    def do_POST(self):
        body = self.body()
        type(self).bodies.append(body)
        choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "M"}}
        if self.logprobs and body.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": "M", "logprob": math.log(0.8), "top_logprobs": [
                {"token": "M", "logprob": math.log(0.8)}, {"token": "m", "logprob": math.log(0.2)}]}]}
        self.send_json({"choices": [choice]})


@pytest.fixture
def annotator_url():
    Annotator.bodies = []
    with serving(Annotator) as server:
        yield v1_url(server)


def _suite(folder: Path, judge: str, scorer: str = "{type: alpaca_eval}", name: str = "alpaca") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ntasks:\n  - name: ae\n    benchmark: alpaca_eval\n    breakdown: [dataset]\n"
                    f"    generation: {{max_new_tokens: 8}}\n    scorers: [{scorer}]\njudge: {judge}\n")
    return path


@needs_mirror
@pytest.mark.slow
@pytest.mark.parametrize("logprobs", [True, False], ids=["top_logprobs", "chosen token"])
def test_alpaca_eval_annotator_prompt_and_weighted_preference(tmp_path, store_dir, tiny_model_dir, annotator_url,
                                                             capsys, logprobs, monkeypatch):
    Annotator.logprobs = logprobs
    judge = f"{{base_url: '{annotator_url}', model: gpt-4-1106-preview, retries: 0}}"
    suite = _suite(tmp_path, judge, "{type: alpaca_eval, annotator: alpaca_eval}")
    monkeypatch.setenv("WB_HOME", str(tmp_path / "home"))  # a fresh judge cache
    res = run_cli(["eval", tiny_model_dir, "--suite", suite, "--limit", "3", "--data-dir", MIRROR, "--json"], capsys)
    assert res.code == 0, res.stderr
    run = json.loads(res.stdout)["run_id"]
    samples = [json.loads(line)
               for line in (store_dir / "runs" / run / "samples" / "ae.jsonl").read_text().splitlines()]
    config = ae.annotator_config()
    template_system = config["template"].split("<|im_start|>system\n")[1].split("<|im_end|>")[0].strip()
    assert len(Annotator.bodies) == 3
    for sample in samples:
        asked = f'"instruction": """{sample["messages"][-1]["content"]}"""'
        [body] = [b for b in Annotator.bodies if asked in b["messages"][1]["content"]]  # sent concurrently
        assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 5
        system, user = body["messages"]
        assert system == {"role": "system", "content": template_system}
        rec = sample["judge"]["alpaca_eval"]
        first, second = (sample["output"], rec["baseline_output"]) if rec["switched"] else \
            (rec["baseline_output"], sample["output"])
        assert user["content"].index(f'"output": """{first}"""') < user["content"].index(f'"output": """{second}"""')
        # "M" (the second shown) preferred: with p(M) 0.8 the preference is 1.8 in the shown order, else 2
        shown = 1.8 if logprobs else 2.0
        assert rec["preference"] == pytest.approx(3 - shown if rec["switched"] else shown)
        assert sample["scores"]["alpaca_eval.win_rate"] == pytest.approx(rec["preference"] - 1)
    metrics = {m["metric"]: m for m in json.loads((store_dir / "runs" / run / "results.json").read_text())["metrics"]}
    win = metrics["alpaca_eval.win_rate"]
    assert win["value"] == pytest.approx(sum(s["scores"]["alpaca_eval.win_rate"] for s in samples) / 3)
    assert win["alpaca_eval"]["win_rate"] == pytest.approx(100 * win["value"]) and win["n"] == 3
    datasets = {s["metadata"]["dataset"] for s in samples}
    for dataset in datasets:  # AlpacaEval's `dataset` as a breakdown
        part = [s["scores"]["alpaca_eval.win_rate"] for s in samples if s["metadata"]["dataset"] == dataset]
        assert metrics[f"alpaca_eval.win_rate[dataset={dataset}]"]["value"] == pytest.approx(sum(part) / len(part))


@needs_mirror
def test_gates_name_the_alpaca_eval_metrics(tmp_path):
    from workbench.eval.suites import load_suite

    loaded = load_suite(str(_suite(tmp_path, LOCAL)), limit=2, data_dir=MIRROR)
    assert loaded.metric_names() == {"ae": ["alpaca_eval.win_rate", "alpaca_eval.length_controlled_winrate"]}


@needs_mirror
@pytest.mark.slow
def test_against_a_baseline_checkpoint_compares_with_its_answers(tmp_path, store_dir, tiny_model_dir, capsys):
    """The baseline is the same checkpoint: every pair is identical, a tie by definition, and no judge is asked."""
    suite = _suite(tmp_path, LOCAL, "{type: alpaca_eval, against: baseline}")
    res = run_cli(["eval", tiny_model_dir, "--suite", suite, "--limit", "3", "--data-dir", MIRROR,
                   "--baseline", tiny_model_dir, "--json"], capsys)
    assert res.code == 0, res.stderr
    out = json.loads(res.stdout)
    samples = [json.loads(line) for line in
               (store_dir / "runs" / out["run_id"] / "samples" / "ae.jsonl").read_text().splitlines()]
    assert all(s["judge"]["alpaca_eval"]["identical"] and s["judge"]["alpaca_eval"]["baseline_output"] == s["output"]
               and s["judge"]["alpaca_eval"]["baseline"] != ae.REFERENCE for s in samples)
    [win] = [m for m in out["metrics"] if m["metric"] == "alpaca_eval.win_rate"]
    assert win["value"] == 0.5 and win["alpaca_eval"]["n_draws"] == 3
    assert out["judge"]["requests"] == 0 and out["judge"]["endpoint"]["server_started"] is False


# ---- bad input ----------------------------------------------------------------------------------------------------


@needs_mirror
def test_a_mirror_folder_missing_its_file_is_one_line_exit_3(tmp_path, store_dir, tiny_model_dir, capsys):
    (tmp_path / "mirror" / "alpaca_eval").mkdir(parents=True)
    suite = _suite(tmp_path, LOCAL)
    before = snapshot(tmp_path)
    res = run_cli(["eval", tiny_model_dir, "--suite", suite, "--data-dir", tmp_path / "mirror"], capsys)
    assert res.code == 3 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and f"alpaca_eval/{ae.OUTPUTS}: missing" in res.stderr
    assert snapshot(tmp_path) == before


@needs_mirror
def test_against_baseline_without_a_baseline_is_one_line_exit_3(tmp_path, store_dir, tiny_model_dir, capsys):
    suite = _suite(tmp_path, LOCAL, "{type: alpaca_eval, against: baseline}")
    res = run_cli(["eval", tiny_model_dir, "--suite", suite, "--data-dir", MIRROR], capsys)
    assert res.code == 3 and res.stderr.strip().count("\n") == 0, res.stderr
    assert "against: baseline" in res.stderr and "--baseline" in res.stderr
    assert not store_dir.exists() or not any(store_dir.glob("*eval*"))


@needs_mirror
def test_alpaca_eval_annotator_on_the_local_judge_is_one_line_exit_3(tmp_path, store_dir, tiny_model_dir, capsys):
    suite = _suite(tmp_path, LOCAL, "{type: alpaca_eval, annotator: alpaca_eval}")
    res = run_cli(["eval", tiny_model_dir, "--suite", suite, "--data-dir", MIRROR], capsys)
    assert res.code == 3 and res.stderr.strip().count("\n") == 0, res.stderr
    assert "annotator: alpaca_eval needs judge.base_url" in res.stderr


@needs_mirror
@pytest.mark.slow
def test_a_baseline_run_of_another_suite_is_one_line_exit_3(tmp_path, store_dir, tiny_model_dir, capsys):
    data = tmp_path / "other.jsonl"
    data.write_text(json.dumps({"id": "1", "prompt": "Say 1", "reference": "1"}) + "\n")
    other = tmp_path / "other.yaml"
    other.write_text(f"name: other\ntasks:\n  - name: say\n    data: {data}\n    generation: {{max_new_tokens: 2}}\n"
                     "    scorers: [{type: exact}]\n")
    res = run_cli(["eval", tiny_model_dir, "--suite", other, "--json"], capsys)
    assert res.code == 0, res.stderr
    run = json.loads(res.stdout)["run_id"]
    suite = _suite(tmp_path, LOCAL, "{type: alpaca_eval, against: baseline}")
    res = run_cli(["eval", tiny_model_dir, "--suite", suite, "--data-dir", MIRROR, "--baseline", run], capsys)
    assert res.code == 3 and res.stderr.strip().count("\n") == 0, res.stderr
    assert f"--baseline {run}: a run of suite 'other', not 'alpaca'" in res.stderr


# ---- a real run -----------------------------------------------------------------------------------------------------

@needs_mirror
@pytest.mark.slow
def test_default_model_judged_by_the_local_judge(tmp_path, store_dir, capsys):
    suite = _suite(tmp_path, "{model: default, max_tokens: 96}")
    res = run_cli(["eval", "default", "--suite", suite, "--limit", "2", "--data-dir", MIRROR, "--json"], capsys)
    assert res.code == 0, res.stderr
    run = json.loads(res.stdout)["run_id"]
    samples = [json.loads(line)
               for line in (store_dir / "runs" / run / "samples" / "ae.jsonl").read_text().splitlines()]
    assert [s["metadata"]["index"] for s in samples] == [0, 1]
    for s in samples:
        rec = s["judge"]["alpaca_eval"]
        assert rec["baseline"] == ae.REFERENCE and rec["baseline_output"] == s["reference"]
        assert s["scores"]["alpaca_eval.win_rate"] in (0.0, 0.5, 1.0, None)
    print(res.stdout)

"""Issue 29's rough edges, each as a user meets it through `wb`: recipe paths, third-party noise (quiet unless -v),
tables that fit, the compare caption of a judge suite, the dashboard's defaults and `--matrix` reusing an identical
run."""

import json
import os
import subprocess
import sys

from hostile_support import check_case, run_cli, tiny_adapter_dir, workspace  # noqa: F401  (fixtures)

from workbench.store import Store


def wb(*args, cwd=None, env=None, unset=(), timeout=600):
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    return subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


# --- 1. data_checks.against: relative to the recipe, errors name the recipe key ---

def test_against_path_missing_names_the_recipe_key(workspace, request, capsys, monkeypatch):  # noqa: F811
    monkeypatch.chdir(workspace.root)  # not the recipe's folder
    case = (lambda ws, g: ["train", ws.recipe(extra="data_checks: {against: [held-out.jsonl]}\n"), "-o",
                           ws.root / "out"], 3, ("recipe.yaml: data_checks.against: held-out.jsonl: no such file",))
    check_case(case, workspace, request, capsys)
    assert "--against" not in capsys.readouterr().err


def test_against_path_is_read_relative_to_the_recipe(workspace, request, capsys, monkeypatch):  # noqa: F811
    """The eval file beside the recipe is found from another folder: its items overlap the rows, so wb train
    refuses them (before, the file was looked up in the current folder and named as --against)."""
    monkeypatch.chdir(workspace.root)
    items = "".join(json.dumps({"id": str(i), "prompt": f"Say {i}", "reference": str(i)}) + "\n" for i in range(4))

    def build(ws, g):
        ws.file("evals/held-out.jsonl", items)
        return ["train", ws.recipe(extra="data_checks: {against: [evals/held-out.jsonl], ngram: 2}\n"), "-o",
                ws.root / "out"]

    check_case((build, 3, ("recipe.jsonl: 4 rows share 2-grams with evals/held-out.jsonl",)), workspace, request,
               capsys)


# --- 2. third-party noise: off unless -v ---

NOISE = ("GPT-QModel", "Python GIL is enabled", "Loading weights", "FutureWarning", "fatal: not a git repository")


# What wb sets for its children (console._library_noise_off) and leaves in os.environ of a test process that ran
# wb's main() in-process: a user's own setting of these wins, so the test's children start without them.
NOISE_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "PYTHONWARNINGS",
                  "TRANSFORMERS_VERBOSITY", "TQDM_DISABLE")


def test_merge_prints_no_library_noise_unless_verbose(tmp_path, tiny_adapter_dir):  # noqa: F811
    env = {"WB_STORE": str(tmp_path / "store")}
    quiet = wb("merge", tiny_adapter_dir, "-o", tmp_path / "m1", cwd=tmp_path, env=env, unset=NOISE_SWITCHES)
    assert quiet.returncode == 0, quiet.stderr
    assert "merged into" in quiet.stderr
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr
    assert len(quiet.stderr.splitlines()) <= 2, quiet.stderr
    loud = wb("-v", "merge", tiny_adapter_dir, "-o", tmp_path / "m2", cwd=tmp_path, env=env, unset=NOISE_SWITCHES)
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr and "FutureWarning" in loud.stderr, loud.stderr


def test_lm_eval_records_the_git_hash_without_running_git(tmp_path):
    """lm-eval's git hash is read from .git by its own reader once wb's harness module set it up: no `git`
    subprocess, so nothing on stderr outside a repository."""
    code = ("import os, subprocess\n"
            "from workbench.system.extras import require\n"
            "import workbench.eval.harness as h\n"
            "ev = require('lm_eval.evaluator', 'x')\n"
            "h.git_hash_without_git(ev)\n"
            "def refuse(*a, **k): raise AssertionError('git was run')\n"
            "subprocess.check_output = refuse\n"
            "print('HASH', ev.get_git_commit_hash())\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "HASH None" in res.stdout, res.stderr
    assert "fatal" not in res.stderr


# --- 3. tables and help that fit ---

def test_help_in_a_pipe_is_100_columns():
    res = wb("eval", "--help", unset=("COLUMNS", "TERMINAL_WIDTH"))
    widths = [len(line) for line in res.stdout.splitlines()]
    assert res.returncode == 0 and max(widths) == 100, max(widths)


def test_run_ids_shortened_to_their_unique_suffix():
    from workbench.eval.matrix import short_ids

    ids = ["20261205-083618-eval-176931", "20261205-083632-eval-d16a6c", "20261205-083700-eval-d16a6c"]
    assert short_ids(ids) == {ids[0]: "176931", ids[1]: "083632-eval-d16a6c", ids[2]: "083700-eval-d16a6c"}


def test_samples_prompts_cut_at_a_word_boundary():
    from workbench.compare.runs import prompt_tail

    text = "Extract the contact as one line of JSON with the fields name, email and phone from: Call Maria Lopez " \
           "at 555-0101 or write maria@example.com"
    cut = prompt_tail(text)
    assert cut == "…name, email and phone from: Call Maria Lopez at 555-0101 or write maria@example.com"
    assert len(cut) <= 90 and prompt_tail("short") == "short"


# --- 4. a judge suite's compare: the one-sided metric explained, n a number ---

def _judge_run(store, name, *, pairwise: bool):
    manifest = {"checkpoint": {"name": name}, "suite": "judge-demo", "limit": None,
                "judge": {"tasks": {"remind": {} if pairwise else
                                    {"judge_pairwise": {"skipped": "pairwise grading needs a baseline run "
                                                                   "(--baseline)"}}}}}
    with store.open_run("eval", manifest) as run:
        run.add_metric("remind", "rouge_l", 0.5 if pairwise else 0.4, n=8, source="task")
        if pairwise:
            run.add_metric("remind", "judge_pairwise", 0.625, n=8, source="judge")
    return run.run_id


def test_judge_compare_names_the_one_sided_metric_and_why(tmp_path, capsys, monkeypatch):
    store = Store(tmp_path / "store")
    a, b = _judge_run(store, "base", pairwise=False), _judge_run(store, "tuned", pairwise=True)
    res = run_cli(["compare", a, b, "--store", tmp_path / "store"], capsys)
    assert res.code == 0, res.stderr
    caption = "only in B: remind/judge_pairwise (A: pairwise grading needs a baseline run (--baseline))"
    assert caption in " ".join(res.stdout.split()), res.stdout  # the caption wraps with the table's width
    from workbench.compare.runs import compare_runs, comparison_cells

    cells = comparison_cells(compare_runs(store.load(a), store.load(b)))
    assert [c["n"] for c in cells] == ["8", "8"]


# --- 5. the dashboard's defaults ---

def test_dashboard_opens_on_the_newest_suite_and_its_own_task(tmp_path):
    from workbench.compare.runs import sample_diffs, sample_tasks
    from workbench.dashboard import views

    store, runs = Store(tmp_path), []
    for name, suite in (("a", "regression"), ("b", "mine")):
        with store.open_run("eval", {"checkpoint": {"name": name, "sha": name}, "suite": suite}) as run:
            run.add_metric("mmlu_anatomy", "acc", 0.3, n=4, source="lm-eval")
            run.add_metric("remind", "exact", 0.5, n=4, source="task")
            run.write_samples("remind", [{"id": "1", "messages": [{"role": "user", "content": "q"}], "output": "x",
                                          "reference": "x", "scores": {"exact": 1.0}}])
            run.write_samples("lm-eval.mmlu_anatomy", [{
                "doc_id": 0, "filter": "none", "doc": {"question": "q", "choices": ["bone", "skin", "hair", "eye"]},
                "target": 1, "prompt": "q", "continuations": [" A", " B", " C", " D"],
                "loglikelihoods": [-1.0, -0.5, -2.0, -3.0], "metrics": {"acc": 1.0}}])
        runs.append(store.load(run.run_id))
    manifests = store.list_runs()
    assert views.latest_suite(manifests) == "mine"
    rows = views.leaderboard_rows(store, manifests)
    assert views.default_sort_column(rows, "mine") == "remind / exact"
    assert sample_tasks(*runs) == ["remind", "lm-eval.mmlu_anatomy"]
    (diff,) = sample_diffs(*runs, "lm-eval.mmlu_anatomy")
    assert diff["reference"] == "B: skin" and diff["a"] == " B"



# --- 6. --matrix reuses an identical recorded run, and says so ---

def test_matrix_reuses_identical_runs_and_says_so(tmp_path, tiny_adapter_dir):  # noqa: F811
    env = {"WB_STORE": str(tmp_path / "store"), "COLUMNS": "200"}
    (tmp_path / "items.jsonl").write_text("".join(
        json.dumps({"id": str(i), "prompt": f"Say {i}", "reference": str(i)}) + "\n" for i in range(2)))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: tiny\ntasks:\n  - name: say\n    data: items.jsonl\n"
                     "    generation: {max_new_tokens: 4}\n    scorers: [{type: exact}]\n")
    assert wb("merge", tiny_adapter_dir, "-o", tmp_path / "merged", env=env).returncode == 0
    matrix = ("eval", "--matrix", tiny_adapter_dir, "--suite", suite)
    first = wb(*matrix, env=env)
    assert first.returncode == 0, first.stderr
    assert "reusing" not in first.stderr and "2 new eval runs" in first.stderr
    second = wb(*matrix, "--json", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("reusing run") == 2, second.stderr
    members = json.loads(second.stdout)["members"]
    st = Store(tmp_path / "store")
    assert all(m["reused"] for m in members)
    for m in members:  # the earlier runs, recorded by the first matrix, stand for these members
        assert st.load(m["run_id"]).manifest["lineage"]["matrix_run"] != json.loads(second.stdout)["run_id"]
    third = wb(*matrix, env=env)
    assert "0 new eval runs" in third.stderr and "(2 identical runs reused)" in third.stderr, third.stderr
    assert "(reused)" in third.stdout and members[0]["run_id"] not in third.stdout  # short ids by default
    assert members[0]["run_id"] in wb(*matrix, "--wide", env=env).stdout
    again = wb(*matrix, "--no-reuse", "--json", env=env)
    assert again.returncode == 0 and "reusing" not in again.stderr, again.stderr
    assert not any(m["reused"] for m in json.loads(again.stdout)["members"])

"""The CLI through its real entry point, in subprocesses, against a temporary store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "lm_eval", "llama_cpp", "streamlit", "peft", "trl", "datasets")


def wb(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "sys.argv = ['wb', '--help']\n"
        "from workbench.cli.main import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "train" in res.stdout and "export" in res.stdout and "doctor" in res.stdout
    assert "LOADED []" in res.stdout, res.stdout


@pytest.mark.parametrize("verb", ["train", "eval", "judge", "merge", "export", "compare", "dashboard", "runs", "doctor"])
def test_every_verb_has_help(verb):
    res = wb(verb, "--help")
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout


def _assert_bad_input(res, store_dir: Path, *needles):
    assert res.returncode == 3, (res.returncode, res.stderr)
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (store_dir / "runs").exists() or not any((store_dir / "runs").iterdir())


def test_eval_missing_checkpoint_is_one_line_exit_3(store_dir):
    res = wb("eval", "/no/such/ckpt", "--suite", "contacts")
    _assert_bad_input(res, store_dir, "/no/such/ckpt", "no such file")


def test_eval_malformed_suite_is_one_line_exit_3(store_dir, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\ntasks:\n  - name: t\n    data: x.jsonl\n    scorers: [{type: nope}]\n    extra_key: 1\n")
    res = wb("eval", "default", "--suite", str(bad))
    _assert_bad_input(res, store_dir, "broken.yaml", "scorers.0.type", "extra_key")
    bad.write_text("name: [unclosed\n")
    _assert_bad_input(wb("eval", "default", "--suite", str(bad)), store_dir, "broken.yaml", "not valid YAML")


def test_eval_data_dir_without_mmlu_is_one_line_exit_3(store_dir, tmp_path):
    empty = tmp_path / "mirror"
    (empty / "gsm8k").mkdir(parents=True)
    res = wb("eval", "default", "--suite", "demo", "--data-dir", str(empty))
    _assert_bad_input(res, store_dir, str(empty), "mmlu")


def test_compare_unknown_run_exit_3(store_dir):
    res = wb("compare", "nope-a", "nope-b")
    assert res.returncode == 3 and "no such run" in res.stderr


def test_unknown_option_is_usage_error_exit_2():
    assert wb("eval", "--bogus").returncode == 2


def test_doctor_json(store_dir):
    res = wb("doctor", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["store"] == str(store_dir)
    assert report["versions"]["ckpt-workbench"]
    assert set(report["extras"]) >= {"train", "eval", "gguf", "dashboard"}


def test_gate_passes_exit_0_and_fails_exit_1_with_reports(store_dir, tmp_path, tiny_model_dir):
    junitparser = pytest.importorskip("junitparser", reason="needs the test extra (junitparser)")
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": f"Say {i}", "reference": str(i)}) + "\n"
                            for i in range(3)))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: tiny\ntasks:\n  - name: say\n    data: items.jsonl\n"
                     "    generation: {max_new_tokens: 4}\n    scorers: [{type: exact}]\n")
    gates = tmp_path / "gates.yaml"
    gates.write_text("gates:\n  - {task: say, metric: exact, min_value: 0.0}\n")
    ok = wb("eval", str(tiny_model_dir), "--suite", str(suite), "--gates", str(gates), "--junit",
            str(tmp_path / "ok.xml"))
    assert ok.returncode == 0, ok.stderr
    gates.write_text("gates:\n  - {task: say, metric: exact, min_value: 1.0}\n")
    md = tmp_path / "summary.md"
    bad = wb("eval", str(tiny_model_dir), "--suite", str(suite), "--gates", str(gates), "--junit",
             str(tmp_path / "bad.xml"), "--markdown", str(md), env={"GITHUB_STEP_SUMMARY": str(tmp_path / "gh.md")})
    assert bad.returncode == 1, bad.stderr
    assert "gate failed" in bad.stderr
    failed = junitparser.JUnitXml.fromfile(str(tmp_path / "bad.xml"))
    cases = [case for suite_ in failed for case in suite_]
    assert len(cases) == 1 and not cases[0].is_passed
    assert "min_value" in md.read_text() and md.read_text().strip() in (tmp_path / "gh.md").read_text()
    passed = junitparser.JUnitXml.fromfile(str(tmp_path / "ok.xml"))
    assert all(case.is_passed for s in passed for case in s)

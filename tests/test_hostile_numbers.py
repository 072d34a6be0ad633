"""Hostile numbers and values libraries choke on (issue 30, causes 1 and 3): every float a user gives is finite or
refused, PEFT, mergekit, lm-eval and regex values are checked before a run opens, training that diverges publishes
nothing, and what the store writes is strict JSON. Refusals meet hostile_support's contract."""

import json

import pytest
from hostile_support import check_case, run_cli, tiny_adapter_dir, workspace  # noqa: F401  (fixtures)


def _tiny(g):
    return str(g("tiny_model_dir"))


def _recipe(ws, g, training: str = "max_steps: 1, batch_size: 2", extra: str = "") -> str:
    """A recipe on the tiny Llama with four rows."""
    ws.file("r.jsonl", "".join(json.dumps({"prompt": f"Say {i}", "reference": str(i)}) + "\n" for i in range(4)))
    return ws.file("r.yaml", f"name: tiny-lora\nbase: {_tiny(g)}\ntrain_data: r.jsonl\n"
                             f"training: {{{training}}}\n{extra}")


def _train(training: str = "max_steps: 1, batch_size: 2", extra: str = ""):
    return lambda ws, g: ["train", _recipe(ws, g, training, extra), "-o", ws.root / "out"]


def _eval(extra: str = "", generation: str = "max_new_tokens: 4", scorers: str = "{type: exact}", *more):
    def build(ws, g):
        ws.file("s.jsonl", "".join(json.dumps({"id": str(i), "prompt": f"Say {i}", "reference": str(i)}) + "\n"
                                   for i in range(3)))
        suite = ws.file("s.yaml", f"name: tiny\ntasks:\n  - name: say\n    data: s.jsonl\n"
                                  f"    generation: {{{generation}}}\n    scorers: [{scorers}]\n{extra}")
        return ["eval", _tiny(g), "--suite", suite, *more]
    return build


def _gates(body: str):
    def build(ws, g):
        argv = _eval()(ws, g)
        return argv + ["--gates", ws.file("g.yaml", f"gates:\n  - {{task: say, metric: exact, {body}}}\n")]
    return build


def _mergekit(body: str, two_models: bool = True):
    def build(ws, g):
        tiny = _tiny(g)
        other = str(ws.variant(g("tiny_model_dir"), "tiny2")) if two_models else tiny
        return ["merge", "--mergekit", ws.file("mk.yaml", body.format(a=tiny, b=other)), "-o", ws.root / "out"]
    return build


def _train_with_bad_regex_suite(ws, g):
    _eval(scorers="{type: regex, pattern: '([a-z'}")(ws, g)  # writes s.yaml beside the recipe
    return _train(extra="eval_during_training: {suite: s.yaml, every_steps: 1}\n")(ws, g)


LINEAR = "merge_method: linear\nmodels:\n  - model: {a}\n    parameters: {{weight: %s}}\n" \
         "  - model: {b}\n    parameters: {{weight: 0.5}}\ndtype: %s\n"

CASES = {
    # recipes: typed floats (pydantic's allow_inf_nan=False) and the free-form mappings handed to TRL and PEFT
    "recipe-learning-rate-inf": (_train("max_steps: 1, learning_rate: .inf"), 3,
                                 ("r.yaml", "training.learning_rate", "finite")),
    "recipe-warmup-ratio-nan": (_train("max_steps: 1, warmup_ratio: .nan"), 3, ("r.yaml", "training.warmup_ratio")),
    "recipe-loraplus-ratio-inf": (_train("max_steps: 1, loraplus_lr_ratio: .inf"), 3,
                                  ("training.loraplus_lr_ratio", "finite")),
    "recipe-lora-alpha-nan": (_train(extra="lora: {alpha: .nan}\n"), 3, ("r.yaml", "lora.alpha", "finite")),
    "recipe-lora-dropout-nan": (_train(extra="lora: {dropout: .nan}\n"), 3, ("lora.dropout", "finite")),
    "recipe-method-args-nan": (_train(extra="method_args: {neftune_noise_alpha: .nan}\n"), 3,
                               ("r.yaml", "method_args", "neftune_noise_alpha", "finite")),
    "recipe-peft-alpha-inf": (_train(extra="peft: {type: lora, lora_alpha: .inf}\n"), 3,
                              ("r.yaml", "peft", "lora_alpha", "finite")),
    # PEFT values PEFT itself finds only inside get_peft_model, after the run opened
    "recipe-lora-r-many": (_train(extra="lora: {r: many}\n"), 3, ("r.yaml", "lora.r")),
    "recipe-peft-r-many": (_train(extra="peft: {type: lora, r: many}\n"), 3, ("r.yaml", "peft.r", "'many'")),
    "recipe-lora-no-such-module": (_train(extra="lora: {target_modules: [q_proj, no_such_proj]}\n"), 3,
                                   ("r.yaml", "lora.target_modules", "no_such_proj", "q_proj, up_proj")),
    "recipe-peft-no-such-module": (_train(extra="peft: {type: lora, target_modules: [no_such_proj]}\n"), 3,
                                   ("peft.target_modules", "no_such_proj", "v_proj")),
    "recipe-peft-regex-matches-nothing": (_train(extra="peft: {type: lora, target_modules: '.*nope'}\n"), 3,
                                          ("peft.target_modules", ".*nope")),
    "recipe-eval-during-training-bad-regex": (_train_with_bad_regex_suite, 3,
                                              ("r.yaml", "eval_during_training", "task 'say'", "([a-z")),
    # suites: generation, scorers, harness, judge, gates
    "suite-temperature-inf": (_eval(generation="max_new_tokens: 4, temperature: .inf"), 3,
                              ("s.yaml", "tasks.0.generation.temperature", "finite")),
    "suite-numeric-tolerance-nan": (_eval(scorers="{type: numeric, tolerance: .nan}"), 3,
                                    ("s.yaml", "scorers.0.tolerance", "finite")),
    "suite-numeric-tolerance-negative": (_eval(scorers="{type: numeric, tolerance: -1}"), 3,
                                         ("s.yaml", "scorers.0.tolerance")),
    "suite-regex-invalid": (_eval(scorers="{type: regex, pattern: '([a-z'}"), 3,
                            ("s.yaml", "tasks.0.scorers.0.pattern", "task 'say'", "([a-z")),
    "suite-harness-limit-negative": (_eval("harness:\n  - {tasks: [mmlu_anatomy], limit: -3}\n"), 3,
                                     ("s.yaml", "harness.0.limit", "-3")),
    "suite-harness-gen-kwargs-nan": (_eval("harness:\n  - {tasks: [mmlu_anatomy], gen_kwargs: {temperature: .nan}}\n"),
                                     3, ("s.yaml", "harness.0.gen_kwargs", "temperature", "finite")),
    "suite-judge-timeout-inf": (_eval("judge: {timeout_s: .inf}\n"), 3, ("s.yaml", "judge.timeout_s", "finite")),
    "suite-gate-min-value-nan": (_eval("gates:\n  - {task: say, metric: exact, min_value: .nan}\n"), 3,
                                 ("s.yaml", "gates.0.min_value", "finite")),
    "gates-file-min-value-nan": (_gates("min_value: .nan"), 3, ("g.yaml", "gates.0.min_value", "finite")),
    "gates-file-max-value-inf": (_gates("max_value: .inf"), 3, ("g.yaml", "gates.0.max_value", "finite")),
    "gates-file-max-drop-inf": (_gates("max_drop: .inf"), 3, ("g.yaml", "gates.0.max_drop", "finite")),
    "gates-file-significance-nan": (_gates("max_drop: 0.1, significance: .nan"), 3,
                                    ("g.yaml", "gates.0.significance")),
    # sweep files
    "sweep-num-cpus-inf": (lambda ws, g: ["sweep", ws.file("w.yaml", f"checkpoints: [{_tiny(g)}]\nsuites: [x]\n"
                                                                     "resources: {num_cpus: .inf}\n")], 3,
                           ("w.yaml", "resources.num_cpus", "finite")),
    "sweep-gen-kwargs-nan": (lambda ws, g: ["sweep", ws.file("w.yaml", f"checkpoints: [{_tiny(g)}]\ntasks: [gsm8k]\n"
                                                                       "gen_kwargs: {temperature: .nan}\n")], 3,
                             ("w.yaml", "gen_kwargs", "temperature", "finite")),
    # command-line floats: click's ranges let nan and inf through
    "eval-gen-kwargs-inf": (lambda ws, g: ["eval", _tiny(g), "--tasks", "gsm8k", "--gen-kwargs", "temperature=.inf"],
                            3, ("--gen-kwargs", "temperature", "finite")),
    "merge-tolerance-inf": (lambda ws, g: ["merge", str(g("tiny_adapter_dir")), "-o", ws.root / "out",
                                           "--tolerance", "inf"], 3, ("--tolerance", "finite")),
    "import-adapter-lora-alpha-inf": (lambda ws, g: ["import-adapter", str(g("tiny_adapter_dir")), "-o",
                                                     ws.root / "out", "--lora-alpha", "inf"], 3,
                                      ("--lora-alpha", "finite")),
    "export-kld-budget-nan": (lambda ws, g: ["export", _tiny(g), "-o", ws.root / "out", "--ladder",
                                             "--kld-budget", "nan"], 3, ("--kld-budget", "finite")),
    # mergekit: values mergekit checks only while it plans or writes tensors, inside the run
    "mergekit-weight-heavy": (_mergekit(LINEAR % ("heavy", "float32")), 3,
                              ("mk.yaml", "models.0.parameters.weight", "'heavy'")),
    "mergekit-weight-nan": (_mergekit(LINEAR % (".nan", "float32")), 3,
                            ("mk.yaml", "models.0.parameters.weight", "finite")),
    "mergekit-dtype-float7": (_mergekit(LINEAR % ("1", "float7")), 3, ("mk.yaml", "dtype", "float7")),
    "mergekit-layer-range-past-the-model": (
        _mergekit("merge_method: passthrough\nslices:\n  - sources:\n      - model: {a}\n        layer_range: [0, 999]\n"
                  "dtype: float32\n", two_models=False), 3,
        ("mk.yaml", "slices.0.sources.0.layer_range", "[0, 999]", "2 layers")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_before_anything_runs(name, workspace, request, capsys):
    if name.startswith("mergekit"):
        pytest.importorskip("mergekit", reason="needs the merge extra (mergekit)")
    check_case(CASES[name], workspace, request, capsys)


def _strict(text: str):
    """json.loads that refuses NaN and Infinity, as standard JSON readers do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_training_that_diverges_publishes_nothing(workspace, tiny_model_dir, capsys):
    """A finite but huge learning rate: the first step's update is ~1e30 per weight (finite), the second step's
    forward overflows and the LoRA weights become NaN. Without the check `wb train` exited 0 with an adapter of
    NaNs; now it stops at that step with exit 3, no adapter folder, and the run recorded as an error."""
    ws = workspace
    recipe = _recipe(ws, lambda _: tiny_model_dir, "max_steps: 2, batch_size: 2, learning_rate: 1.0e30, "
                                                   "logging_steps: 1, save_steps: 1")
    res = run_cli(["train", recipe, "-o", ws.root / "out"], capsys)
    assert res.code == 3, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "r.yaml" in errors[0] and "diverged at step 2" in errors[0], res.stderr
    assert "NaN or inf" in errors[0] and "training.learning_rate" in errors[0], errors[0]
    assert res.stdout == ""
    assert not (ws.root / "out").exists()
    # the step-1 checkpoint (finite weights) may stay, to resume from; nothing of step 2 was saved
    saved = sorted(p.name for p in (ws.root / "out.checkpoints").glob("checkpoint-*"))
    assert saved in ([], ["checkpoint-1"]), saved
    runs = list((ws.store / "runs").iterdir())
    assert len(runs) == 1
    manifest = _strict((runs[0] / "run.json").read_text())
    assert manifest["status"] == "error" and "diverged" in manifest["error"]
    _strict((runs[0] / "results.json").read_text())


def test_non_finite_metric_is_null_with_a_reason(tmp_path):
    """A metric that came out NaN or infinite (a library's stderr of one sample, a diverged loss) is recorded as
    null with the reason beside it; run.json, results.json, samples and index.db hold strict JSON only."""
    from workbench.store import Store

    store = Store(tmp_path / "store")
    with store.open_run("eval", {"command": "test", "params": {"x": float("inf")}}) as run:
        run.add_metric("t", "m", float("nan"), stderr=float("inf"), n=1)
        run.add_metric("t", "ok", 0.5, n=1)
        run.write_samples("t", [{"id": "1", "score": float("nan")}])
    results = _strict((run.path / "results.json").read_text())["metrics"]
    bad = next(m for m in results if m["metric"] == "m")
    assert bad["value"] is None and "not a finite number (nan)" in bad["value_note"]
    assert bad["stderr"] is None and "(inf)" in bad["stderr_note"]
    assert next(m for m in results if m["metric"] == "ok")["value"] == 0.5
    assert _strict((run.path / "run.json").read_text())["params"]["x"] is None
    assert _strict((run.path / "samples" / "t.jsonl").read_text())["score"] is None
    loaded = store.load(run.run_id)
    assert loaded.metric("t", "m")["value"] is None
    import sqlite3

    conn = sqlite3.connect(store.index_path)
    try:
        _strict(conn.execute("SELECT manifest FROM runs").fetchone()[0])
    finally:
        conn.close()


def test_case_count():
    assert len(CASES) >= 30, len(CASES)


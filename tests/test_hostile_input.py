"""Hostile input to `wb eval`: bad suites, data, gates, options and checkpoints. Each case is refused with its exit
code and one line naming the file or field, before anything is written (hostile_support has the contract)."""

import json

import pytest
from hostile_support import (  # noqa: F401  (fixtures)
    JUNK_BYTES as JUNK,
)
from hostile_support import (
    adapter_naming,
    check_case,
    gguf_header,
    other_base_dir,
    run_cli,
    tiny_adapter_dir,
    truncated,
    workspace,
)


def _eval(ws, ckpt, *extra, suite=None):
    return ["eval", ckpt, "--suite", suite or ws.suite(), *extra]


def _tiny(g):
    return str(g("tiny_model_dir"))


SUITE_CASES = {
    "suite-binary-junk": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.file("s.yaml", JUNK)], 3,
                          ("s.yaml", "not UTF-8")),
    "suite-not-a-mapping": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.file("s.yaml", "- a\n- b\n")], 3,
                            ("s.yaml", "mapping")),
    "suite-yaml-syntax": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.file("s.yaml", "name: [unclosed\n")], 3,
                          ("s.yaml", "not valid YAML")),
    "suite-unknown-scorer": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.file("s.yaml", (
        "name: x\ntasks:\n  - {name: t, data: d.jsonl, scorers: [{type: nope}]}\n"))), 3, ("s.yaml", "scorers.0.type")),
    "suite-is-a-folder": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.inputs], 3, ("inputs", "folder")),
    "suite-unknown-name": (lambda ws, g: ["eval", _tiny(g), "--suite", "no-such-suite"], 3, ("no-such-suite",)),
    "suite-no-tasks": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.file("s.yaml", "name: x\n")), 3,
                       ("s.yaml", "tasks")),
    "data-latin1-line": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.suite(rows=(
        b'{"id": "1", "prompt": "a", "reference": "1"}\n{"id": "2", "prompt": "caf\xe9", "reference": "2"}\n'))),
                         3, ("suite.jsonl:2", "UTF-8")),
    "data-missing": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.file("s.yaml", (
        "name: x\ntasks:\n  - {name: t, data: gone.jsonl, scorers: [{type: exact}]}\n"))), 3, ("gone.jsonl",)),
    "data-broken-json-line": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.suite(rows=(
        '{"prompt": "a", "reference": "1"}\n{"prompt": \n'))), 3, ("suite.jsonl:2", "JSON")),
    "data-row-without-reference": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.suite(rows='{"prompt": "a"}\n')), 3,
                                   ("suite.jsonl:1", "reference")),
    "data-empty": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.suite(rows="")), 3, ("suite.jsonl", "no rows")),
    "data-binary-junk": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.suite(rows=JUNK)), 3, ("suite.jsonl:1",)),
    "json-schema-file-missing": (lambda ws, g: _eval(ws, _tiny(g), suite=ws.suite(extra=(
        "  - name: schema\n    data: suite.jsonl\n    scorers: [{type: json_schema, json_schema: nope.json}]\n"))),
                                 3, ("nope.json",)),
    "gates-binary-junk": (lambda ws, g: _eval(ws, _tiny(g), "--gates", ws.file("g.yaml", JUNK)), 3,
                          ("g.yaml", "not UTF-8")),
    "gates-missing-file": (lambda ws, g: _eval(ws, _tiny(g), "--gates", ws.inputs / "nope.yaml"), 3, ("nope.yaml",)),
    "gates-unknown-task": (lambda ws, g: _eval(ws, _tiny(g), "--gates", ws.file("g.yaml", (
        "gates:\n  - {task: nosuch, metric: exact, min_value: 0.5}\n"))), 3, ("nosuch", "no task")),
    "gates-unknown-metric": (lambda ws, g: _eval(ws, _tiny(g), "--gates", ws.file("g.yaml", (
        "gates:\n  - {task: say, metric: bleu, min_value: 0.5}\n"))), 3, ("bleu",)),
    "gates-without-rule": (lambda ws, g: _eval(ws, _tiny(g), "--gates", ws.file("g.yaml", (
        "gates:\n  - {task: say, metric: exact}\n"))), 3, ("g.yaml", "min_value")),
    "junit-without-gates": (lambda ws, g: _eval(ws, _tiny(g), "--junit", ws.root / "r.xml"), 3, ("--junit",)),
    "junit-in-read-only-folder": (lambda ws, g: _eval(ws, _tiny(g), "--gates", ws.file("g.yaml", (
        "gates:\n  - {task: say, metric: exact, min_value: 0.0}\n")), "--junit", ws.readonly() / "r.xml"), 3,
                                  ("--junit", "read-only")),
    "junit-is-a-folder": (lambda ws, g: _eval(ws, _tiny(g), "--gates", ws.file("g.yaml", (
        "gates:\n  - {task: say, metric: exact, min_value: 0.0}\n")), "--junit", ws.inputs), 3, ("--junit", "folder")),
    "markdown-under-a-file": (lambda ws, g: _eval(ws, _tiny(g), "--gates", ws.file("g.yaml", (
        "gates:\n  - {task: say, metric: exact, min_value: 0.0}\n")), "--markdown", ws.file("f", "x") / "r.md"), 3,
                              ("--markdown", "is a file")),
    "store-is-a-file": (lambda ws, g: _eval(ws, _tiny(g), "--store", ws.file("store-file", "x")), 3,
                        ("store-file", "is a file")),
    "store-in-read-only-folder": (lambda ws, g: _eval(ws, _tiny(g), "--store", ws.readonly() / "store"), 3,
                                  ("store", "read-only")),
    "limit-0": (lambda ws, g: ["eval", "default", "--suite", "contacts", "--limit", "0"], 2, ("--limit",)),
    "limit-negative": (lambda ws, g: ["eval", "default", "--suite", "contacts", "--limit", "-1"], 2, ("--limit",)),
    "dtype-float13": (lambda ws, g: _eval(ws, _tiny(g), "--dtype", "float13"), 3, ("--dtype", "float13")),
    "suite-and-tasks": (lambda ws, g: _eval(ws, _tiny(g), "--tasks", "mmlu"), 3, ("--suite", "--tasks")),
    "neither-suite-nor-tasks": (lambda ws, g: ["eval", _tiny(g)], 3, ("--suite", "--tasks")),
    "gen-kwargs-not-key-value": (lambda ws, g: _eval(ws, _tiny(g), "--gen-kwargs", "temperature"), 3,
                                 ("--gen-kwargs",)),
    "include-path-missing": (lambda ws, g: _eval(ws, _tiny(g), "--include-path", ws.inputs / "none"), 3,
                             ("--include-path",)),
    "baseline-neither-run-nor-path": (lambda ws, g: _eval(ws, _tiny(g), "--baseline", "nope-run"), 3,
                                      ("--baseline", "nope-run")),
    "batch-size-0": (lambda ws, g: _eval(ws, _tiny(g), "--batch-size", "0"), 2, ("--batch-size",)),
}


def _config(g, **changes) -> str:
    cfg = json.loads((g("tiny_model_dir") / "config.json").read_text())
    return json.dumps({**cfg, **changes})


def _gguf_cut(ws, g, keep):
    from workbench.checkpoints.default_model import default_gguf_path

    return ws.file("cut.gguf", truncated(default_gguf_path(), keep))


CHECKPOINT_CASES = {
    "ckpt-missing": (lambda ws, g: _eval(ws, str(ws.inputs / "none")), 3, ("none", "no such file")),
    "ckpt-file-not-gguf": (lambda ws, g: _eval(ws, ws.file("model.bin", "x")), 3, ("model.bin", ".gguf")),
    "ckpt-empty-folder": (lambda ws, g: _eval(ws, ws.inputs), 3, ("inputs", "config.json")),
    "safetensors-cut-in-half": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "cut", model__safetensors=(
        truncated(g("tiny_model_dir") / "model.safetensors", 0.5)))), 3, ("model.safetensors", "truncated")),
    "safetensors-cut-in-header": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "cut", model__safetensors=(
        truncated(g("tiny_model_dir") / "model.safetensors", 100)))), 3, ("model.safetensors",)),
    "safetensors-header-junk": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "junk", model__safetensors=(
        (16).to_bytes(8, "little") + b"\xff" * 64))), 3, ("model.safetensors", "header")),
    "safetensors-empty": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "empty", model__safetensors=b"")),
                          3, ("model.safetensors",)),
    "config-corrupt": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "bad", config__json='{"model_type": ')),
                       3, ("config.json", "not valid JSON")),
    "config-not-an-object": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "bad", config__json="[1, 2]")), 3,
                             ("config.json", "object")),
    "config-latin1": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "bad", config__json=(
        b'{"model_type": "llama", "name": "caf\xe9"}'))), 3, ("config.json", "UTF-8")),
    "config-without-model-type": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "bad", config__json=(
        _config(g, model_type=None)))), 3, ("config.json", "model_type")),
    "model-type-unknown-with-auto-map": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "remote", config__json=(
        _config(g, model_type="wbcustom", auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"})))), 3,
                                         ("config.json", "trust_remote_code")),
    "model-type-unknown": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "odd", config__json=(
        _config(g, model_type="wbcustom")))), 3, ("config.json", "wbcustom", "not known")),
    "tokenizer-json-corrupt": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "badtok", tokenizer__json="{")),
                               3, ("tokenizer.json", "not valid JSON")),
    "generation-config-corrupt": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "badgen",
                                                                     generation_config__json="[")), 3,
                                  ("generation_config.json",)),
    "config-without-weights": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "noweights",
                                                               model__safetensors=None)), 3, ("no weights",)),
    "shard-index-names-missing-shard": (lambda ws, g: _eval(ws, ws.variant(g("tiny_model_dir"), "sharded",
        model__safetensors__index__json=json.dumps({"weight_map": {"x": "model-00002-of-00002.safetensors"}}))), 3,
                                        ("model-00002-of-00002.safetensors", "missing")),
    "gguf-cut-in-header": (lambda ws, g: _eval(ws, _gguf_cut(ws, g, 1000)), 3, ("cut.gguf", "truncated")),
    "gguf-cut-in-half": (lambda ws, g: _eval(ws, _gguf_cut(ws, g, 0.5)), 3, ("cut.gguf", "truncated")),
    "gguf-tensor-data-missing": (lambda ws, g: _eval(ws, ws.file("t.gguf", gguf_header())), 3, ("t.gguf", "truncated")),
    "gguf-bad-magic": (lambda ws, g: _eval(ws, ws.file("x.gguf", b"GGUX" + b"\0" * 64)), 3, ("x.gguf", "magic")),
    "gguf-empty": (lambda ws, g: _eval(ws, ws.file("e.gguf", b"")), 3, ("e.gguf",)),
    "adapter-base-path-missing": (lambda ws, g: _eval(ws, adapter_naming(ws, g("tiny_adapter_dir"), "a", "/no/such/base")),
                                  3, ("/no/such/base", "does not exist")),
    "adapter-meta-base-missing": (lambda ws, g: _eval(ws, adapter_naming(
        ws, g("tiny_adapter_dir"), "a", str(g("tiny_model_dir")), meta=json.dumps({"base": "/no/such/base"}))), 3,
                                  ("/no/such/base", "wb_checkpoint.json")),
    "adapter-meta-invalid-json": (lambda ws, g: _eval(ws, adapter_naming(
        ws, g("tiny_adapter_dir"), "a", str(g("tiny_model_dir")), meta="{not json")), 3,
                                  ("wb_checkpoint.json", "not valid JSON")),
    "adapter-config-invalid-json": (lambda ws, g: _eval(ws, ws.variant(g("tiny_adapter_dir"), "a",
                                                                    adapter_config__json="{")), 3,
                                    ("adapter_config.json", "not valid JSON")),
    "adapter-names-no-base": (lambda ws, g: _eval(ws, adapter_naming(ws, g("tiny_adapter_dir"), "a", None)), 3,
                              ("names no base",)),
    "adapter-base-other-shapes": (lambda ws, g: _eval(ws, adapter_naming(
        ws, g("tiny_adapter_dir"), "a", str(g("other_base_dir")))), 3, ("does not fit", "in the base")),
    "adapter-weights-cut": (lambda ws, g: _eval(ws, ws.variant(g("tiny_adapter_dir"), "a", adapter_model__safetensors=(
        truncated(g("tiny_adapter_dir") / "adapter_model.safetensors", 0.5)))), 3,
                            ("adapter_model.safetensors", "truncated")),
    "adapter-hub-base-offline": (lambda ws, g: _eval(ws, adapter_naming(ws, g("tiny_adapter_dir"), "a",
                                                                        "wb-nobody/no-such-model")), 3,
                                 ("wb-nobody/no-such-model", "HF_HUB_OFFLINE")),
    "adapter-on-cut-base": (lambda ws, g: _eval(ws, str(g("tiny_adapter_dir")), "--base", ws.variant(
        g("tiny_model_dir"), "cut", model__safetensors=truncated(g("tiny_model_dir") / "model.safetensors", 0.5))), 3,
                            ("model.safetensors", "truncated")),
    "adapter-base-is-gguf": (lambda ws, g: _eval(ws, str(g("tiny_adapter_dir")), "--base",
                                                 ws.file("b.gguf", gguf_header())), 3, ("b.gguf",)),
}


@pytest.mark.parametrize("name", sorted(SUITE_CASES))
def test_eval_refuses_bad_input(name, workspace, request, capsys):
    check_case(SUITE_CASES[name], workspace, request, capsys)


@pytest.mark.parametrize("name", sorted(CHECKPOINT_CASES))
def test_eval_refuses_bad_checkpoint(name, workspace, request, capsys):
    check_case(CHECKPOINT_CASES[name], workspace, request, capsys)


def test_gguf_cut_with_lm_eval_tasks_is_refused_before_the_run(workspace, request, capsys, data_dir):
    check_case((lambda ws, g: ["eval", _gguf_cut(ws, g, 0.5), "--tasks", "mmlu_anatomy", "--data-dir", data_dir], 3,
                ("cut.gguf", "truncated")), workspace, request, capsys)


def test_gate_naming_no_task_of_the_run_is_refused_before_lm_eval_runs(workspace, request, capsys, data_dir):
    def build(ws, g):
        suite = ws.suite(extra="harness:\n  - {tasks: [mmlu_anatomy], limit: 2}\n")
        gates = ws.file("g.yaml", "gates:\n  - {task: mmlu_anatomy, metric: acc, min_value: 0}\n"
                                  "  - {task: mmlu_astronomy, metric: acc, min_value: 0.5}\n")
        return ["eval", _tiny(g), "--suite", suite, "--gates", gates, "--data-dir", data_dir]

    check_case((build, 3, ("mmlu_astronomy", "no task")), workspace, request, capsys, data_cache=True)


def test_known_model_type_with_auto_map_runs_with_a_recorded_warning(workspace, tiny_model_dir, capsys):
    """Custom code beside a model type transformers knows: the built-in class runs, and the run says so."""
    ws = workspace
    model = ws.variant(tiny_model_dir, "custom", config__json=json.dumps(
        {**json.loads((tiny_model_dir / "config.json").read_text()),
         "auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}))
    res = run_cli(["eval", model, "--suite", ws.suite(), "--limit", "1", "--json"], capsys)
    assert res.code == 0, res.stderr
    assert "auto_map" in res.stderr and "did not run" in res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    manifest = json.loads((ws.store / "runs" / run_id / "run.json").read_text())
    assert any("trust_remote_code" in w for w in manifest["checkpoint"]["extra"]["warnings"])

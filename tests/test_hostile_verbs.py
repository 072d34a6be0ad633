"""Hostile input to merge, export, train, judge, runs, dashboard and compare: each case refused with its exit code
and one line naming the file or field, before a run is opened or anything is written (see hostile_support)."""

import socket

import pytest
from hostile_support import (  # noqa: F401  (fixtures)
    JUNK_BYTES,
    adapter_naming,
    check_case,
    gguf_header,
    other_base_dir,
    tiny_adapter_dir,
    truncated,
    workspace,
)


def _adapter(g):
    return str(g("tiny_adapter_dir"))


def _tiny(g):
    return str(g("tiny_model_dir"))


MERGE_CASES = {
    "merge-base-missing": (lambda ws, g: ["merge", adapter_naming(ws, g("tiny_adapter_dir"), "a", "/no/such/base"),
                                          "-o", ws.root / "out"], 3, ("/no/such/base",)),
    "merge-base-other-shapes": (lambda ws, g: ["merge", adapter_naming(ws, g("tiny_adapter_dir"), "a",
                                                                       str(g("other_base_dir"))),
                                               "-o", ws.root / "out"], 3, ("does not fit",)),
    "merge-out-read-only-parent": (lambda ws, g: ["merge", _adapter(g), "-o", ws.readonly() / "out"], 3,
                                   ("out", "read-only")),
    "merge-out-is-a-file": (lambda ws, g: ["merge", _adapter(g), "-o", ws.file("out", "x")], 3, ("out", "is a file")),
    "merge-out-not-empty": (lambda ws, g: ["merge", _adapter(g), "-o", ws.file("full/x", "x").parent], 3,
                            ("full", "not empty")),
    "merge-not-an-adapter": (lambda ws, g: ["merge", _tiny(g), "-o", ws.root / "out"], 3, ("not an adapter",)),
    "merge-adapter-config-corrupt": (lambda ws, g: ["merge", ws.variant(g("tiny_adapter_dir"), "a",
                                                                        adapter_config__json="{"),
                                                    "-o", ws.root / "out"], 3, ("adapter_config.json",)),
    "merge-negative-tolerance": (lambda ws, g: ["merge", _adapter(g), "-o", ws.root / "out", "--tolerance", "-1"], 2,
                                 ("--tolerance",)),
    "merge-store-is-a-file": (lambda ws, g: ["merge", _adapter(g), "-o", ws.root / "out",
                                             "--store", ws.file("s", "x")], 3, ("is a file",)),
}

EXPORT_CASES = {
    "export-out-read-only-parent": (lambda ws, g: ["export", _tiny(g), "-q", "q8_0", "-o", ws.readonly() / "out"], 3,
                                    ("out", "read-only")),
    "export-out-is-a-file": (lambda ws, g: ["export", _tiny(g), "-q", "q8_0", "-o", ws.file("out", "x")], 3,
                             ("out", "is a file")),
    "export-out-not-empty": (lambda ws, g: ["export", _tiny(g), "-o", ws.file("full/x", "x").parent], 3,
                             ("not empty",)),
    "export-unknown-quant": (lambda ws, g: ["export", _tiny(g), "-q", "q3_bogus", "-o", ws.root / "out"], 3,
                             ("q3_bogus",)),
    "export-unknown-format": (lambda ws, g: ["export", _tiny(g), "--format", "onnx", "-o", ws.root / "out"], 3,
                              ("onnx",)),
    "export-of-a-gguf": (lambda ws, g: ["export", ws.file("m.gguf", gguf_header()), "-o", ws.root / "out"], 3,
                         ("m.gguf",)),
    "export-cut-safetensors": (lambda ws, g: ["export", ws.variant(g("tiny_model_dir"), "cut", model__safetensors=(
        truncated(g("tiny_model_dir") / "model.safetensors", 0.5))), "-o", ws.root / "out"], 3,
                               ("model.safetensors", "truncated")),
    "export-corrupt-config": (lambda ws, g: ["export", ws.variant(g("tiny_model_dir"), "bad", config__json="{"),
                                             "-o", ws.root / "out"], 3, ("config.json",)),
    "export-heldout-missing": (lambda ws, g: ["export", _tiny(g), "-o", ws.root / "out", "--heldout",
                                              ws.inputs / "none.txt"], 3, ("none.txt",)),
    "export-ladder-without-verify": (lambda ws, g: ["export", _tiny(g), "-o", ws.root / "out", "--ladder",
                                                    "--no-verify"], 3, ("--ladder",)),
    "export-calibration-for-gguf": (lambda ws, g: ["export", _tiny(g), "-o", ws.root / "out", "--calibration",
                                                   ws.file("c.txt", "x")], 3, ("--calibration",)),
    "export-imatrix-data-missing": (lambda ws, g: ["export", _tiny(g), "-o", ws.root / "out", "--imatrix-data",
                                                   ws.inputs / "none.jsonl"], 3, ("none.jsonl",)),
    "export-adapter-base-missing": (lambda ws, g: ["export", adapter_naming(ws, g("tiny_adapter_dir"), "a",
                                                                           "/no/such/base"), "-o", ws.root / "out"],
                                    3, ("/no/such/base",)),
}

TRAIN_CASES = {
    "recipe-binary-junk": (lambda ws, g: ["train", ws.file("r.yaml", JUNK_BYTES), "-o", ws.root / "out"], 3,
                           ("r.yaml", "not UTF-8")),
    "recipe-missing": (lambda ws, g: ["train", ws.inputs / "none.yaml", "-o", ws.root / "out"], 3, ("none.yaml",)),
    "recipe-unknown-key": (lambda ws, g: ["train", ws.recipe(extra="epochs: 3\n"), "-o", ws.root / "out"], 3,
                           ("recipe.yaml", "epochs")),
    "recipe-rows-missing-fields": (lambda ws, g: ["train", ws.recipe(rows='{"prompt": "a"}\n'), "-o", ws.root / "out"],
                                   3, ("recipe.jsonl:1", "reference")),
    "recipe-data-missing": (lambda ws, g: ["train", ws.recipe(rows=False), "-o", ws.root / "out"], 3,
                            ("recipe.jsonl", "no such file")),
    "recipe-base-missing": (lambda ws, g: ["train", ws.recipe(base="/no/such/base"), "-o", ws.root / "out"], 3,
                            ("recipe.yaml", "/no/such/base")),
    "recipe-base-cut": (lambda ws, g: ["train", ws.recipe(base=str(ws.variant(
        g("tiny_model_dir"), "cut", model__safetensors=truncated(g("tiny_model_dir") / "model.safetensors", 0.5)))),
        "-o", ws.root / "out"], 3, ("model.safetensors", "truncated")),
    "recipe-base-is-an-adapter": (lambda ws, g: ["train", ws.recipe(base=_adapter(g)), "-o", ws.root / "out"], 3,
                                  ("recipe.yaml", "base")),
    "recipe-broken-line": (lambda ws, g: ["train", ws.recipe(rows='{"prompt": "a", "reference": "b"}\n{"prompt"\n'),
                                          "-o", ws.root / "out"], 3, ("recipe.jsonl:2",)),
    "recipe-latin1-row": (lambda ws, g: ["train", ws.recipe(rows=b'{"prompt": "caf\xe9", "reference": "b"}\n'),
                                         "-o", ws.root / "out"], 3, ("recipe.jsonl:1", "UTF-8")),
    "recipe-lora-r-0": (lambda ws, g: ["train", ws.recipe(extra="lora: {r: 0}\n"), "-o", ws.root / "out"], 3,
                        ("lora.r",)),
    "train-max-steps-negative": (lambda ws, g: ["train", ws.recipe(), "-o", ws.root / "out", "--max-steps", "-5"], 3,
                                 ("--max-steps",)),
    "train-max-steps-0": (lambda ws, g: ["train", ws.recipe(), "-o", ws.root / "out", "--max-steps", "0"], 3,
                          ("--max-steps",)),
    "train-out-is-a-file": (lambda ws, g: ["train", ws.recipe(), "-o", ws.file("out", "x")], 3, ("is a file",)),
    "train-out-read-only-parent": (lambda ws, g: ["train", ws.recipe(), "-o", ws.readonly() / "out"], 3,
                                   ("read-only",)),
}


def _stored_run(ws, kind: str) -> str:
    """A finished run of `kind` in the workspace's store, as an earlier command would have left it."""
    from workbench.store import Store

    with Store(ws.store).open_run(kind, {"command": f"wb {kind}"}) as run:
        pass
    return run.run_id


def _busy_port(ws) -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    ws.keep = sock  # held until the workspace is gone
    return sock.getsockname()[1]


OTHER_CASES = {
    "judge-a-merge-run": (lambda ws, g: ["judge", _stored_run(ws, "merge")], 3, ("merge run", "eval run")),
    "judge-baseline-an-export-run": (lambda ws, g: ["judge", _stored_run(ws, "eval"), "--baseline",
                                                    _stored_run(ws, "export")], 3, ("--baseline", "export run")),
    "judge-unknown-run": (lambda ws, g: ["judge", "nope"], 3, ("nope", "no such run")),
    "judge-store-is-a-file": (lambda ws, g: ["judge", "latest", "--store", ws.file("s", "x")], 3, ("is a file",)),
    "runs-kind-bogus": (lambda ws, g: ["runs", "--kind", "bogus"], 2, ("--kind", "train, eval")),
    "runs-limit-negative": (lambda ws, g: ["runs", "--limit", "-1"], 2, ("--limit",)),
    "runs-store-is-a-file": (lambda ws, g: ["runs", "--store", ws.file("s", "x")], 3, ("is a file",)),
    "compare-unknown-runs": (lambda ws, g: ["compare", "nope-a", "nope-b"], 3, ("nope-a", "no such run")),
    "compare-store-is-a-file": (lambda ws, g: ["compare", "a", "b", "--store", ws.file("s", "x")], 3, ("is a file",)),
    "dashboard-port-99999": (lambda ws, g: ["dashboard", "--port", "99999"], 2, ("--port",)),
    "dashboard-port-0": (lambda ws, g: ["dashboard", "--port", "0"], 2, ("--port",)),
    "dashboard-store-missing": (lambda ws, g: ["dashboard", "--store", ws.root / "no-store"], 3,
                                ("no-store", "no such folder")),
    "dashboard-store-is-a-file": (lambda ws, g: ["dashboard", "--store", ws.file("s", "x")], 3, ("is a file",)),
    "dashboard-port-in-use": (lambda ws, g: ["dashboard", "--store", ws.inputs, "--port", str(_busy_port(ws))], 3,
                              ("--port",)),
    "dashboard-app-missing": (lambda ws, g: ["dashboard", "--store", ws.inputs, "--dashboards-dir", ws.inputs], 3,
                              ("app.py",)),
    "unknown-verb": (lambda ws, g: ["evaluate", "x"], 2, ("evaluate",)),
}


@pytest.mark.parametrize("name", sorted(MERGE_CASES))
def test_merge_refuses_bad_input(name, workspace, request, capsys):
    check_case(MERGE_CASES[name], workspace, request, capsys)


@pytest.mark.parametrize("name", sorted(EXPORT_CASES))
def test_export_refuses_bad_input(name, workspace, request, capsys):
    check_case(EXPORT_CASES[name], workspace, request, capsys)


@pytest.mark.parametrize("name", sorted(TRAIN_CASES))
def test_train_refuses_bad_input(name, workspace, request, capsys):
    check_case(TRAIN_CASES[name], workspace, request, capsys)


@pytest.mark.parametrize("name", sorted(OTHER_CASES))
def test_judge_runs_compare_dashboard_refuse_bad_input(name, workspace, request, capsys):
    if name in ("dashboard-port-in-use", "dashboard-app-missing"):
        pytest.importorskip("streamlit", reason="needs the dashboard extra (streamlit)")
    check_case(OTHER_CASES[name], workspace, request, capsys)


def test_case_count():
    """The issue asks for at least 60 hostile inputs across every verb."""
    from test_hostile_input import CHECKPOINT_CASES, SUITE_CASES

    total = sum(map(len, (SUITE_CASES, CHECKPOINT_CASES, MERGE_CASES, EXPORT_CASES, TRAIN_CASES, OTHER_CASES)))
    assert total >= 60, total
    assert {name.split("-")[0] for name in OTHER_CASES} >= {"judge", "runs", "compare", "dashboard"}

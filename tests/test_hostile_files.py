"""Hostile files (issue 30, "bounded input"): YAML anchor bombs in the free-form fields, files that are not regular
files (FIFO, device, symlink loop), JSON nested 100k deep, a damaged run.json and binary held-out data. Each is
refused by workbench.system.user_files with its exit code and one line naming the file, before anything is written
(hostile_support has the contract).

A case that hangs or eats memory when it regresses (an anchor bomb, a FIFO, /dev/zero) runs `python -m workbench`
in a child process under a memory limit (RLIMIT_AS) and a timeout, so a regression fails in seconds instead of
hanging the suite or the machine."""

import itertools
import json
import os
import resource
import subprocess
import sys

import pytest
from hostile_support import (  # noqa: F401  (fixtures)
    JUNK_BYTES as JUNK,
)
from hostile_support import (
    Result,
    assert_refused,
    check_case,
    snapshot,
    workspace,  # noqa: F401  (fixture)
)

MEMORY_LIMIT = 3 << 30  # address space of the child: wb and its imports fit, an expanded bomb does not
TIMEOUT_S = 90  # a refusal takes seconds; a FIFO read or a bomb's expansion never ends


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_child(ws, argv: list) -> Result:
    """`wb ARGV` in a child process with the workspace's environment, under MEMORY_LIMIT and TIMEOUT_S."""
    env = {**os.environ, "TMPDIR": str(ws.root / "sys-tmp"), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        res = subprocess.run([sys.executable, "-m", "workbench", *map(str, argv)], env=env, capture_output=True,
                             text=True, check=False, timeout=TIMEOUT_S, preexec_fn=_limited, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"wb {' '.join(map(str, argv))}: still running after {TIMEOUT_S} s (a hang)")
    return Result(res.returncode, res.stdout, res.stderr)


def check_child_case(case, ws, request) -> None:
    build, code, needles = case
    argv = build(ws, request.getfixturevalue)
    before = snapshot(ws.root)
    res = run_child(ws, argv)
    assert_refused(res, code, tuple(n(ws) if callable(n) else n for n in needles), before, ws.root)


def _bomb(levels: int = 9) -> str:
    """A flow mapping whose last key expands to 9**levels scalars (a billion laughs): about 800 bytes of YAML."""
    names = [chr(ord("a") + i) for i in range(levels)]
    parts = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * 9)}]"]
    parts += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in itertools.pairwise(names)]
    return "{" + ", ".join(parts) + "}"


def _tiny(g):
    return str(g("tiny_model_dir"))


def _fifo(ws, name: str):
    path = ws.inputs / name
    os.mkfifo(path)
    return path


def _loop(ws, name: str):
    """A symlink that points at itself through a second one."""
    a, b = ws.inputs / name, ws.inputs / f"{name}.other"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _recipe_over(ws, make):
    """A recipe whose train_data (recipe.jsonl) is what make(ws, name) puts there instead of a file of rows."""
    make(ws, "recipe.jsonl")
    return ws.recipe(rows=False)


DEEP_ROW = "[" * 100_000 + "]" * 100_000 + "\n"
TINY_SUITE = "name: x\ntasks:\n  - {{name: t, data: {data}, scorers: [{{type: exact}}]}}\n"


def _suite_with_data(ws, data: str):
    return ws.file("s.yaml", TINY_SUITE.format(data=data))


def _mergekit(ws, parameters: str, g):
    return ws.file("mk.yaml", f"merge_method: linear\ndtype: float32\nmodels:\n"
                              f"  - model: {_tiny(g)}\n    parameters: {parameters}\n"
                              f"  - model: {_tiny(g)}\n    parameters: {{weight: 0.5}}\n")


# ---- in a child process: bombs and what would hang ----------------------------------------------------------

CHILD_CASES = {
    "recipe-method-args-bomb": (lambda ws, g: ["train", ws.recipe(extra=f"method_args: {_bomb()}\n"),
                                               "-o", ws.root / "out"], 3, ("recipe.yaml:5", "alias")),
    "suite-json-schema-bomb": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.suite(extra=(
        f"  - name: schema\n    data: suite.jsonl\n    scorers: [{{type: json_schema, json_schema: {_bomb()}}}]\n"))],
                               3, ("suite.yaml:9", "alias")),
    "suite-harness-gen-kwargs-bomb": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.file("s.yaml", (
        f"name: x\nharness:\n  - tasks: [gsm8k]\n    gen_kwargs: {_bomb()}\n"))], 3, ("s.yaml:4", "alias")),
    "sweep-gen-kwargs-bomb": (lambda ws, g: ["sweep", ws.file("sw.yaml", (
        f"checkpoints: [default]\ntasks: [gsm8k]\ngen_kwargs: {_bomb()}\n"))], 3, ("sw.yaml:3", "alias")),
    "mergekit-parameters-bomb": (lambda ws, g: ["merge", "--mergekit", _mergekit(ws, _bomb(), g),
                                                "-o", ws.root / "out"], 3, ("mk.yaml:5", "alias")),
    "gates-self-referring-alias": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.suite(), "--gates", ws.file(
        "g.yaml", "gates: &g\n  - {task: say, metric: exact, min_value: 0.5}\n  - *g\n")], 3,
                                   ("g.yaml:3", "refers to the node it is inside")),
    "recipe-yaml-nested-100k-deep": (lambda ws, g: ["train", ws.recipe(extra=(
        "method_args: {x: " + "[" * 100_000 + "]" * 100_000 + "}\n")), "-o", ws.root / "out"], 3,
                                     ("recipe.yaml:5", "nested deeper than 100")),
    "suite-is-a-fifo": (lambda ws, g: ["eval", _tiny(g), "--suite", _fifo(ws, "s.yaml")], 3, ("s.yaml", "FIFO")),
    "suite-data-is-a-fifo": (lambda ws, g: ["eval", _tiny(g), "--suite", _suite_with_data(ws, _fifo(ws, "d.jsonl"))],
                             3, ("d.jsonl", "FIFO")),
    "suite-data-is-dev-zero": (lambda ws, g: ["eval", _tiny(g), "--suite", _suite_with_data(ws, "/dev/zero")], 3,
                               ("/dev/zero", "character device")),
    "gates-is-a-fifo": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.suite(), "--gates", _fifo(ws, "g.yaml")], 3,
                        ("g.yaml", "FIFO")),
    "recipe-is-a-fifo": (lambda ws, g: ["train", _fifo(ws, "r.yaml"), "-o", ws.root / "out"], 3, ("r.yaml", "FIFO")),
    "train-data-is-a-fifo": (lambda ws, g: ["train", _recipe_over(ws, _fifo), "-o", ws.root / "out"], 3,
                             ("recipe.jsonl", "FIFO")),
    "data-check-fifo": (lambda ws, g: ["data", "check", _fifo(ws, "rows.jsonl"), "--template", "none"], 3,
                        ("rows.jsonl", "FIFO")),
    "sweep-file-is-a-fifo": (lambda ws, g: ["sweep", _fifo(ws, "sw.yaml")], 3, ("sw.yaml", "FIFO")),
    "mergekit-config-is-a-fifo": (lambda ws, g: ["merge", "--mergekit", _fifo(ws, "mk.yaml"), "-o", ws.root / "out"],
                                  3, ("mk.yaml", "FIFO")),
    "heldout-is-a-fifo": (lambda ws, g: ["export", _tiny(g), "-q", "q8_0", "-o", ws.root / "out", "--heldout",
                                         _fifo(ws, "h.txt")], 3, ("h.txt", "FIFO")),
}


@pytest.mark.parametrize("name", sorted(CHILD_CASES))
def test_bounded_in_a_child(name, workspace, request):
    check_child_case(CHILD_CASES[name], workspace, request)


# ---- in this process --------------------------------------------------------------------------------------

def _damaged_run(ws, kind: str = "eval", run_json: str | bytes = '{"run_id": "x", "kind": ') -> str:
    """A finished run of `kind` in the store whose run.json was then damaged (a hand edit, a copy cut short)."""
    from workbench.store import Store

    with Store(ws.store).open_run(kind, {"command": f"wb {kind}"}) as run:
        pass
    (run.path / "run.json").write_bytes(run_json if isinstance(run_json, bytes) else run_json.encode())
    return run.run_id


def _good_run(ws, kind: str = "eval") -> str:
    from workbench.store import Store

    with Store(ws.store).open_run(kind, {"command": f"wb {kind}"}) as run:
        pass
    return run.run_id


def _schema_suite(ws):
    ws.file("sc.json", '{"items": ' + DEEP_ROW + "}")
    return ws.suite(extra="  - name: schema\n    data: suite.jsonl\n    scorers: [{type: json_schema, json_schema: sc.json}]\n")


IN_PROCESS_CASES = {
    "data-check-json-100k-deep": (lambda ws, g: ["data", "check", ws.file("rows.jsonl", DEEP_ROW),
                                                 "--template", "none"], 3, ("rows.jsonl:1", "nested deeper")),
    "suite-data-json-100k-deep": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.suite(
        rows='{"prompt": "a", "reference": "1"}\n' + DEEP_ROW)], 3, ("suite.jsonl:2", "nested deeper")),
    "train-data-json-100k-deep": (lambda ws, g: ["train", ws.recipe(rows=DEEP_ROW), "-o", ws.root / "out"], 3,
                                  ("recipe.jsonl:1", "nested deeper")),
    "json-schema-file-100k-deep": (lambda ws, g: ["eval", _tiny(g), "--suite", _schema_suite(ws)], 3,
                                   ("sc.json", "nested deeper")),
    "data-check-symlink-loop": (lambda ws, g: ["data", "check", _loop(ws, "rows.jsonl"), "--template", "none"], 3,
                                ("rows.jsonl", "symlink loop")),
    "suite-data-symlink-loop": (lambda ws, g: ["eval", _tiny(g), "--suite",
                                               _suite_with_data(ws, _loop(ws, "d.jsonl"))], 3,
                                ("d.jsonl", "symlink loop")),
    "train-data-symlink-loop": (lambda ws, g: ["train", _recipe_over(ws, _loop), "-o", ws.root / "out"], 3,
                                ("recipe.jsonl", "symlink loop")),
    "suite-symlink-loop": (lambda ws, g: ["eval", _tiny(g), "--suite", _loop(ws, "s.yaml")], 3,
                           ("s.yaml", "symlink loop")),
    "suite-larger-than-the-cap": (lambda ws, g: ["eval", _tiny(g), "--suite", ws.file(
        "s.yaml", b"#" * (16 << 20) + b"\nname: x\n")], 3, ("s.yaml", "16 MiB")),
    "runs-rebuild-index-on-a-damaged-run-json": (lambda ws, g: ["runs", "--rebuild-index", "--store", ws.store,
                                                                 _damaged_run(ws) and "--json"], 3,
                                                 ("run.json", "not valid JSON")),
    "compare-a-damaged-run-json": (lambda ws, g: ["compare", _good_run(ws), _damaged_run(ws)], 3,
                                   ("run.json", "not valid JSON")),
    "judge-a-damaged-run-json": (lambda ws, g: ["judge", _damaged_run(ws)], 3, ("run.json", "not valid JSON")),
    "compare-a-binary-run-json": (lambda ws, g: ["compare", _good_run(ws), _damaged_run(ws, run_json=JUNK)], 3,
                                  ("run.json", "not UTF-8")),
    "export-binary-heldout": (lambda ws, g: ["export", _tiny(g), "-q", "q8_0", "-o", ws.root / "out", "--heldout",
                                             ws.file("h.txt", JUNK)], 3, ("h.txt", "not UTF-8")),
    "export-binary-heldout-jsonl": (lambda ws, g: ["export", _tiny(g), "-q", "q8_0", "-o", ws.root / "out",
                                                   "--heldout", ws.file("h.jsonl", JUNK)], 3, ("h.jsonl:1", "not valid JSON")),
    "export-binary-imatrix-data": (lambda ws, g: ["export", _tiny(g), "-q", "q4_k_m", "-o", ws.root / "out",
                                                  "--imatrix-data", ws.file("im.txt", JUNK)], 3, ("im.txt", "not UTF-8")),
}


@pytest.mark.parametrize("name", sorted(IN_PROCESS_CASES))
def test_bounded_in_process(name, workspace, request, capsys):
    check_case(IN_PROCESS_CASES[name], workspace, request, capsys)


def test_anchors_within_the_limits_still_load(tmp_path):
    """Aliases and merge keys are ordinary YAML: only their expansion past the limit is refused."""
    from workbench.system.user_files import load_yaml

    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {temperature: 0, max_gen_toks: 64}\nuse: {<<: *b, max_gen_toks: 128}\n"
                    "both: [*b, *b]\n")
    assert load_yaml(path) == {"base": {"temperature": 0, "max_gen_toks": 64},
                               "use": {"temperature": 0, "max_gen_toks": 128},
                               "both": [{"temperature": 0, "max_gen_toks": 64}] * 2}
    assert json.loads(json.dumps(load_yaml(path)))  # plain data, no cycles

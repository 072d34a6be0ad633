"""`wb eval --matrix`: a real adapter on the default model, its merge (`wb merge`) and a GGUF export (`wb export`),
evaluated as one matrix through the CLI; deltas checked against `wb compare`, same-answer counts against the
samples, member discovery (missing, EXL2 skipped), a member failing at eval and the one-line errors."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.store import Store

REPO = Path(__file__).resolve().parent.parent
ITEMS = 6


def wb(*args, store: Path, timeout=900, env=None):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "WB_STORE": str(store), **(env or {})})


def _ok(res):
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    return res


def _suite(folder: Path) -> Path:
    """The contacts task on a few items, short answers, no lm-eval slice: the runtimes, not the benchmark."""
    rows = (REPO / "evals" / "data" / "contacts_test.jsonl").read_text().splitlines()[:ITEMS]
    (folder / "items.jsonl").write_text("\n".join(rows) + "\n")
    suite = folder / "matrix-small.yaml"
    suite.write_text("name: matrix-small\ntasks:\n  - name: contacts\n    data: items.jsonl\n"
                     "    generation: {max_new_tokens: 24, batch_size: 8}\n"
                     "    scorers: [{type: exact}, {type: regex, pattern: '\"age\": [0-9]+'}, {type: token_f1}]\n")
    return suite


@pytest.fixture(scope="module")
def chain(module_tmp, default_ckpt):
    """adapter (PEFT LoRA, random B) -> `wb merge` -> `wb export --format gguf --quant q8_0`, then the matrix."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = module_tmp("matrix")
    store = root / "store"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(default_ckpt.path))
    lora = LoraConfig(r=4, lora_alpha=1, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    adapter = root / "adapter"
    get_peft_model(model, lora).save_pretrained(str(adapter))
    del model
    _ok(wb("merge", str(adapter), "-o", str(root / "merged"), store=store))
    _ok(wb("export", str(root / "merged"), "--format", "gguf", "--quant", "q8_0", "--no-ollama", "--no-verify",
           "-o", str(root / "gguf"), store=store))
    suite = _suite(root)
    res = _ok(wb("eval", "--matrix", str(adapter), "--suite", str(suite), "--json", store=store))
    return {"root": root, "store": store, "adapter": adapter, "suite": suite, "payload": json.loads(res.stdout)}


@pytest.mark.slow
def test_members_each_a_recorded_eval_in_its_runtime(chain):
    payload, st = chain["payload"], Store(chain["store"])
    members = payload["members"]
    assert [(m["kind"], m["format"], m["runtime"], m["status"]) for m in members] == [
        ("adapter", "peft", "transformers + PEFT", "ok"), ("merged", "hf", "transformers", "ok"),
        ("quantized", "gguf", "llama.cpp", "ok")]
    assert members[0]["reference"] and members[0]["path"] == str(chain["adapter"].resolve())
    assert members[2]["path"] == str(next((chain["root"] / "gguf").glob("*-Q8_0.gguf")))
    assert "q8_0" in members[2]["made_by"]
    matrix = st.load(payload["run_id"])
    assert matrix.manifest["kind"] == "matrix" and matrix.manifest["status"] == "ok"
    assert [m["run_id"] for m in matrix.manifest["members"]] == [m["run_id"] for m in members]
    for m in members:
        run = st.load(m["run_id"])
        assert run.manifest["kind"] == "eval" and run.manifest["status"] == "ok"
        assert run.manifest["lineage"] == {"matrix_run": payload["run_id"]}
        assert run.manifest["checkpoint"]["path"] == m["path"]
        assert len(run.samples("contacts")) == ITEMS
    # wide enough for the run id whatever the length of the tmp paths in the table (xdist adds popen-gwN/)
    listed = _ok(wb("runs", "--kind", "matrix", store=chain["store"], env={"COLUMNS": "400"})).stdout
    assert payload["run_id"] in listed


@pytest.mark.slow
def test_deltas_are_wb_compares_and_same_answers_match_the_samples(chain):
    payload, st = chain["payload"], Store(chain["store"])
    reference = payload["members"][0]
    ref_outputs = {s["id"]: s["output"] for s in st.load(reference["run_id"]).samples("contacts")}
    for m in payload["members"][1:]:
        compared = json.loads(_ok(wb("compare", reference["run_id"], m["run_id"], "--json",
                                     store=chain["store"])).stdout)
        assert m["comparison"]["rows"] == compared["rows"]
        samples = st.load(m["run_id"]).samples("contacts")
        ref_samples = st.load(reference["run_id"]).samples("contacts")
        assert {r["metric"] for r in compared["rows"]} == {"exact", "regex", "token_f1"}
        for row in compared["rows"]:
            verdict = m["significance"][f"{row['task']}/{row['metric']}"]
            scores = [s["scores"][row["metric"]] for s in samples + ref_samples]
            # the gates' rule: McNemar on the paired items for 0/1 scores, a paired bootstrap otherwise
            assert ("mcnemar" if set(scores) <= {0.0, 1.0} else "bootstrap") in verdict, verdict
            if row["improved"] == row["regressed"] == 0:
                assert verdict.startswith("no significant difference")
        outputs = {s["id"]: s["output"] for s in samples}
        same = sum(outputs[i] == ref_outputs[i] for i in ref_outputs)
        assert m["same_answers"] == {"contacts": {"same": same, "n": ITEMS}}
        print(f"\n{m['name']} ({m['runtime']}): same answer as the adapter on {same}/{ITEMS}; "
              + ", ".join(f"{r['metric']} {r['a']:.3f} -> {r['b']:.3f}" for r in compared["rows"]))


@pytest.mark.slow
def test_table_shows_each_member_delta_and_same_answers(chain):
    """The printed table, from the recorded runs: each member with its runtime and run, wb compare's deltas, the
    same-answer counts."""
    from rich.console import Console

    from workbench.compare.runs import compare_runs, comparison_cells
    from workbench.eval.matrix import Member, matrix_table

    payload, st = chain["payload"], Store(chain["store"])
    members = [Member(**{k: v for k, v in rec.items() if k in Member.__dataclass_fields__})
               for rec in payload["members"]]
    runs = {m.run_id: st.load(m.run_id) for m in members}
    reference = runs[members[0].run_id]
    comparisons = {m.run_id: compare_runs(reference, runs[m.run_id]) for m in members[1:]}
    console = Console(record=True, width=400, file=io.StringIO())
    console.print(matrix_table("matrix", members, runs, comparisons, wide=True))
    lines = console.export_text().splitlines()
    for m in members:
        first = next(line for line in lines if m.run_id in line)
        assert m.runtime in first and (m.name + (" (CKPT)" if m.reference else "")) in first
        if m.reference:
            continue
        cells = comparison_cells(comparisons[m.run_id])
        same = m.same_answers["contacts"]
        assert f"{same['same']}/{same['n']}" in first
        rows = lines[lines.index(first):][:len(cells)]
        for cell, line in zip(cells, rows):
            assert cell["metric"] in line and cell["Δ (B-A)"] in line and cell["B better/worse"] in line


@pytest.mark.slow
def test_missing_and_exl2_members_are_listed_not_dropped(chain, tmp_path):
    """Discovery alone (no model loads): a moved-away GGUF is missing; an EXL2 folder recorded by an export run is
    skipped with the reason when there is no CUDA."""
    import torch
    from safetensors.torch import save_file

    from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
    from workbench.checkpoints.resolve import resolve_checked
    from workbench.eval.matrix import find_members

    st = Store(chain["store"])
    merged = resolve_checked(str(chain["root"] / "merged"))
    exl2 = tmp_path / "merged-exl2-4.0bpw"
    exl2.mkdir()
    shutil.copy(chain["root"] / "merged" / "config.json", exl2)
    save_file({"w": torch.zeros(2)}, str(exl2 / "output.safetensors"))
    art = Checkpoint(path=exl2, name=exl2.name, kind="quantized", format="exl2", sha=weights_sha(exl2),
                     parent={"name": merged.name, "path": str(merged.path), "sha": merged.sha, "quant": "4.0"})
    art.save_meta()
    with st.open_run("export", {"checkpoint": {"name": merged.name, "path": str(merged.path), "kind": "merged",
                                               "sha": merged.sha, "format": "hf"}, "format": "exl2",
                                "outputs": [{"path": str(exl2), "quant": "4.0", "sha": art.sha}]}):
        pass
    gguf = next((chain["root"] / "gguf").glob("*-Q8_0.gguf"))
    away = tmp_path / gguf.name
    shutil.move(gguf, away)
    try:
        members = find_members(resolve_checked(str(chain["adapter"])), st.list_runs())
    finally:
        shutil.move(away, gguf)
    by_format = {m.format: m for m in members}
    assert [m.kind for m in members] == ["adapter", "merged", "quantized", "quantized"]
    assert by_format["gguf"].status == "missing" and "no longer on disk" in by_format["gguf"].reason
    if not torch.cuda.is_available():
        assert by_format["exl2"].status == "skipped" and "CUDA" in by_format["exl2"].reason
    assert by_format["hf"].status == "planned"


def _one_line_exit_3(res, *needles):
    assert res.returncode == 3, (res.returncode, res.stderr)
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_matrix_refuses_gate_and_baseline_options(tmp_path):
    res = wb("eval", "--matrix", "default", "--suite", "contacts", "--baseline", "x", "--gates", "g.yaml",
             store=tmp_path / "store")
    _one_line_exit_3(res, "--matrix does not combine with --baseline, --gates")
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_nothing_recorded_is_one_line_exit_3_naming_the_commands(chain, tmp_path):
    empty = tmp_path / "empty-store"
    res = wb("eval", "--matrix", str(chain["adapter"]), "--suite", str(chain["suite"]), store=empty)
    _one_line_exit_3(res, "records nothing made from it", "wb merge", "wb export")
    assert not (empty / "runs").exists() or not any((empty / "runs").iterdir())


@pytest.mark.slow
def test_nothing_left_on_disk_is_one_line_exit_3(chain, tmp_path):
    before = len(Store(chain["store"]).run_ids())
    moved = [(chain["root"] / name, tmp_path / name) for name in ("merged", "gguf")]
    for src, dst in moved:
        shutil.move(src, dst)
    try:
        res = wb("eval", "--matrix", str(chain["adapter"]), "--suite", str(chain["suite"]), store=chain["store"])
    finally:
        for src, dst in moved:
            shutil.move(dst, src)
    _one_line_exit_3(res, "nothing made from it is left to evaluate", "missing", "no longer on disk")
    assert len(Store(chain["store"]).run_ids()) == before


@pytest.mark.slow
def test_a_member_failing_at_eval_is_its_row_and_the_rest_go_on(chain, tmp_path):
    """The GGUF member passes discovery and its checks (its file is there, with the recorded sha: check_gguf_file
    reads it with the gguf package, not llama.cpp), then fails when it loads: LLAMA_CPP_LIB_PATH, which
    llama-cpp-python reads on import, names an empty folder, so llama.cpp's shared library is not found in the wb
    process. The adapter and merged model run in transformers. On a copy of the store, so the module's other tests
    see only the chain's runs."""
    from workbench.compare.runs import compare_runs, comparison_cells

    store = tmp_path / "store"
    shutil.copytree(chain["store"], store)
    before = set(Store(store).run_ids())
    empty = tmp_path / "no-llama-lib"
    empty.mkdir()
    # --no-reuse: the chain's store already holds identical runs of every member, which a matrix would reuse;
    # --wide: the row is checked for its runtime column
    res = wb("eval", "--matrix", str(chain["adapter"]), "--suite", str(chain["suite"]), "--no-reuse", "--wide",
             store=store, env={"LLAMA_CPP_LIB_PATH": str(empty), "COLUMNS": "400"})
    # not an error wb recognises (failures.reported): exit 4, as for a sweep's unit, after the table
    assert res.returncode == 4, (res.returncode, res.stderr[-3000:])
    st = Store(store)
    matrix = next(st.load(r) for r in set(st.run_ids()) - before if "-matrix-" in r)
    assert matrix.manifest["status"] == "ok"
    # by format: an earlier test of the module records an EXL2 export too, listed as skipped
    members = {m["format"]: m for m in matrix.manifest["members"]}
    assert [(f, members[f]["status"]) for f in ("peft", "hf", "gguf")] == [("peft", "ok"), ("hf", "ok"),
                                                                            ("gguf", "error")]
    failed = members["gguf"]
    reason = "FileNotFoundError: Shared library with base name 'llama' not found"
    assert failed["reason"] == reason and failed["run_id"] is None
    assert f"error: 1 of 3 matrix members failed: {failed['name']}: {reason}" in res.stderr
    opened = [st.load(r).manifest for r in set(st.run_ids()) - before if "-eval-" in r]
    assert sorted(m["status"] for m in opened) == ["error", "ok", "ok"]  # the GGUF's eval run ended as error
    lines = res.stdout.splitlines()
    row = next(line for line in lines if failed["name"] in line)
    assert f"error: {reason}" in row and failed["runtime"] in row
    reference, merged = (st.load(members[f]["run_id"]) for f in ("peft", "hf"))
    for run in (reference, merged):
        assert run.manifest["status"] == "ok" and run.manifest["lineage"] == {"matrix_run": matrix.run_id}
    assert members["hf"]["same_answers"]["contacts"]["n"] == ITEMS and members["hf"]["significance"]
    cells = comparison_cells(compare_runs(reference, merged))
    first = next(i for i, line in enumerate(lines) if merged.run_id in line)
    for cell, line in zip(cells, lines[first:first + len(cells)]):
        assert cell["metric"] in line and cell["Δ (B-A)"] in line

"""`wb sweep`: a sweep file's checkpoints × suites as units, in-process and on a real multi-node Ray cluster
(ray.cluster_utils.Cluster, several raylets on this machine), with a worker node removed mid-sweep."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_support import assert_refused, run_cli, snapshot

REPO = Path(__file__).resolve().parent.parent
CONTACTS = REPO / "evals" / "data" / "contacts_test.jsonl"


def write_suite(folder: Path, name: str, limit: int, scorers: list[str]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ntasks:\n  - name: contacts\n    data: {CONTACTS}\n    limit: {limit}\n"
        f"    generation: {{max_new_tokens: 20, batch_size: 4}}\n"
        f"    scorers: [{', '.join('{type: ' + s + '}' for s in scorers)}]\n")
    return path


def write_sweep(folder: Path, checkpoints: list[str], suites: list[str], **extra) -> Path:
    path = folder / "sweep.yaml"
    body = {"checkpoints": checkpoints, "suites": suites, **extra}
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def wb(*args, timeout=1200):
    return subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "CI": "true"})


# ---- bad input: exit 3 (4 for an unreachable cluster) before any unit starts, nothing in the store -------------

@pytest.fixture
def sweep_dir(tmp_path, monkeypatch):
    folder = tmp_path / "sweep"
    folder.mkdir()
    write_suite(folder, "s1", 2, ["json_valid"])
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    return folder


@pytest.mark.parametrize("case, body, code, needles", [
    ("missing checkpoint", {"checkpoints": ["out/nope"], "suites": ["s1.yaml"]}, 3, ("checkpoints[0]", "out/nope")),
    ("glob matches nothing", {"checkpoints": ["out/checkpoint-*"], "suites": ["s1.yaml"]}, 3,
     ("checkpoints[0]", "matches no file")),
    ("suite that does not load", {"checkpoints": ["default"], "suites": ["nosuch"]}, 3, ("suites[0]", "nosuch")),
    ("unknown setting", {"checkpoints": ["default"], "suites": ["s1.yaml"], "limt": 3}, 3, ("limt",)),
    ("neither suites nor tasks", {"checkpoints": ["default"]}, 3, ("needs 'suites', 'tasks'",)),
    ("bad dtype", {"checkpoints": ["default"], "suites": ["s1.yaml"], "dtype": "int3"}, 3, ("dtype",)),
])
def test_bad_sweep_files_fail_before_any_unit(sweep_dir, tmp_path, capsys, case, body, code, needles):
    path = sweep_dir / "sweep.yaml"
    path.write_text(json.dumps(body))
    before = snapshot(tmp_path)
    res = run_cli(["sweep", path, "--local"], capsys)
    assert_refused(res, code, needles, before, tmp_path)


def test_a_suite_with_broken_data_fails_before_any_unit(sweep_dir, tmp_path, capsys):
    (sweep_dir / "broken.jsonl").write_text('{"id": 1, "messages": "not a list"}\n')
    (sweep_dir / "broken.yaml").write_text(
        "name: broken\ntasks:\n  - name: t\n    data: broken.jsonl\n    scorers: [{type: exact}]\n")
    path = write_sweep(sweep_dir, ["default"], ["s1.yaml", "broken.yaml"])
    before = snapshot(tmp_path)
    res = run_cli(["sweep", path, "--local"], capsys)
    assert_refused(res, 3, ("suites[1]", "broken"), before, tmp_path)


def test_an_unreachable_ray_address_is_one_line_exit_4(sweep_dir, tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_sweep(sweep_dir, ["default"], ["s1.yaml"])
    before = snapshot(tmp_path)
    started = time.monotonic()
    res = run_cli(["sweep", path, "--ray", f"127.0.0.1:{port}"], capsys)
    assert_refused(res, 4, (f"127.0.0.1:{port}", "no Ray cluster answers"), before, tmp_path)
    assert time.monotonic() - started < 30  # ray.init alone would wait minutes


def test_a_run_lands_in_a_store_once(tmp_path):
    from workbench.store import Store

    scratch, store = Store(tmp_path / "scratch"), Store(tmp_path / "store")
    with scratch.open_run("eval", {"checkpoint": {"name": "x"}, "suite": "s"}) as run:
        run.add_metric("t", "m", 0.5, n=2)
        run.write_samples("t", [{"id": "a", "output": "o"}])
    files = scratch.run_files(run.run_id)
    assert set(files) == {"run.json", "results.json", "samples/t.jsonl"}
    assert store.adopt_run(run.run_id, files) is True
    assert store.adopt_run(run.run_id, files) is False  # a second delivery of the same unit changes nothing
    assert [m["run_id"] for m in store.list_runs()] == [run.run_id]
    assert store.load(run.run_id).metric("t", "m")["value"] == 0.5
    assert store.load(run.run_id).samples("t") == [{"id": "a", "output": "o"}]


# ---- end to end on the default model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def adapters(module_tmp, default_ckpt):
    """Two LoRA adapters of the default model with random (not zero) B: each answers differently from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = module_tmp("sweep-ckpts")
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(str(default_ckpt.path))
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))
        peft_model.save_pretrained(str(out / f"adapter-{seed}"))
        config = json.loads((out / f"adapter-{seed}" / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = "default"
        (out / f"adapter-{seed}" / "adapter_config.json").write_text(json.dumps(config))
    return out


def sweep_in(folder: Path, adapters: Path) -> Path:
    write_suite(folder, "json", 3, ["json_valid"])
    write_suite(folder, "fields", 2, ["exact", "json_fields"])
    return write_sweep(folder, ["default", str(adapters / "adapter-*")], ["json.yaml", "fields.yaml"],
                       no_harness=True, max_retries=2)


def unit_results(store_root: Path) -> dict[str, dict]:
    """unit id -> {metrics, outputs} of every eval run in a store."""
    from workbench.store import Store

    store, out = Store(store_root), {}
    for m in store.list_runs(kind="eval"):
        run = store.load(m["run_id"])
        unit = m["sweep"]["unit"]
        assert unit not in out, f"unit {unit} landed twice"
        out[unit] = {"metrics": {(x["task"], x["metric"]): x["value"] for x in run.metrics},
                     "outputs": {s["id"]: s["output"] for s in run.samples("contacts")}}
    return out


@pytest.fixture(scope="module")
def local_sweep(module_tmp, adapters):
    folder = module_tmp("local-sweep")
    res = wb("sweep", sweep_in(folder, adapters), "--local", "--store", folder / "store", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    return folder / "store", json.loads(res.stdout), res.stderr


@pytest.mark.slow
def test_local_sweep_runs_every_unit_once_with_progress_and_a_leaderboard(local_sweep):
    store, summary, stderr = local_sweep
    results = unit_results(store)
    assert len(results) == 6 and {u["status"] for u in summary["units"]} == {"ok"}
    assert "sweep: 6/6 units finished (6 ok, 0 failed)" in stderr and "eta" in stderr
    board = summary["leaderboard"]
    assert {Path(r["checkpoint"]).name for r in board["rows"]} == {"default", "adapter-1", "adapter-2"}
    assert "json / contacts / json_valid" in board["columns"]
    # the random adapters answer differently from the base: the units really ran their own checkpoints
    outputs = {Path(u.split(" × ")[0]).name: r["outputs"] for u, r in results.items() if u.endswith("× json")}
    assert outputs["default"] != outputs["adapter-1"] != outputs["adapter-2"]
    from workbench.store import Store

    sweep_run = Store(store).load(summary["run_id"])
    assert sweep_run.manifest["kind"] == "sweep" and len(sweep_run.manifest["units"]) == 6


def test_a_checkpoint_whose_config_disagrees_with_its_weights_is_refused_before_any_unit(tmp_path, tiny_model_dir):
    """A model whose config.json disagrees with its weights used to pass the file checks and fail in its units;
    its safetensors headers are now checked against the config's shapes while the sweep is planned: exit 3 naming
    config.json, no unit run, nothing in the store."""
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["intermediate_size"] += 16
    (broken / "config.json").write_text(json.dumps(config))
    write_suite(tmp_path, "json", 2, ["json_valid"])
    path = write_sweep(tmp_path, [str(tiny_model_dir), str(broken)], ["json.yaml"], no_harness=True)
    res = wb("sweep", path, "--local", "--store", tmp_path / "store", "--json")
    assert res.returncode == 3 and res.stdout == "", res.stderr
    assert "config.json: does not match the weights" in res.stderr.strip().splitlines()[-1], res.stderr
    assert unit_results(tmp_path / "store") == {}


@pytest.mark.slow
def test_a_sweep_on_a_ray_cluster_survives_losing_a_worker_node(tmp_path, adapters, local_sweep, monkeypatch):
    """A head node and two worker nodes (1 CPU each) on this machine; once both workers are evaluating, one is
    removed (its raylet killed) and a fresh one joins. Every unit's run must land exactly once, equal to the
    --local sweep's, and the killed worker's units ran again."""
    pytest.importorskip("ray", reason="needs the sweep extra (ray)")
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_worker_niceness", "0")  # Ray's default 15 would yield the CPUs to the rest of the suite
    node_args = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "object_store_memory": 100 * 2**20})
    try:
        workers = [cluster.add_node(**node_args) for _ in range(2)]
        cluster.wait_for_nodes()
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench", "sweep", str(sweep_in(tmp_path, adapters)), "--ray", cluster.address,
             "--store", str(tmp_path / "store"), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CI": "true"})
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if ", 2 running" in line:  # both worker nodes are evaluating a checkpoint now
                cluster.remove_node(workers[0])
                cluster.add_node(**node_args)
                break
        else:
            pytest.fail("the sweep never had two units running:\n" + "".join(lines[-30:]))
        stdout, rest = proc.communicate(timeout=1500)
        stderr = "".join(lines) + rest
        assert proc.returncode == 0, stderr[-4000:]
    finally:
        cluster.shutdown()
    summary = json.loads(stdout)
    for u in summary["units"]:  # shown with -rP: where each unit ran and how many times
        print(f"{u['unit']}: {u['status']}, attempts {u['attempts']}, {u.get('where')}, {u.get('seconds')} s")
    assert [u["status"] for u in summary["units"]] == ["ok"] * 6
    assert max(u["attempts"] for u in summary["units"]) >= 2, summary["units"]  # the lost node's group ran again
    on_ray, local = unit_results(tmp_path / "store"), unit_results(local_sweep[0])
    assert sorted(on_ray) == sorted(local) and len(on_ray) == 6
    for unit in local:
        assert on_ray[unit] == local[unit], unit
    assert "3 nodes" in stderr or "nodes)" in stderr


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_with_130_and_no_partial_run(tmp_path, adapters):
    import signal
    import tempfile

    scratch_before = set(Path(tempfile.gettempdir()).glob("wb-sweep-*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "sweep", str(sweep_in(tmp_path, adapters)), "--local",
         "--store", str(tmp_path / "store")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CI": "true"})
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "1 running" in line:
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(lines)
    from workbench.store import Store

    runs = Store(tmp_path / "store").list_runs()
    assert [m["kind"] for m in runs] == ["sweep"] and runs[0]["status"] == "error"  # the sweep says it stopped
    assert set(Path(tempfile.gettempdir()).glob("wb-sweep-*")) == scratch_before  # the scratch store is gone


@pytest.mark.slow
def test_a_tasks_entry_is_one_lm_eval_unit_per_checkpoint(tmp_path, tiny_model_dir, data_dir):
    """`tasks:` entries run through lm-eval like `wb eval --tasks`, reading the mirror named by data_dir."""
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps({"checkpoints": [str(tiny_model_dir)], "tasks": ["mmlu_anatomy"], "limit": 3,
                                "data_dir": str(data_dir), "batch_size": 4}))
    res = wb("sweep", path, "--local", "--store", tmp_path / "store", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    (unit,) = json.loads(res.stdout)["units"]
    assert unit["status"] == "ok" and unit["unit"].endswith("× lm-eval:mmlu_anatomy")
    from workbench.store import Store

    run = Store(tmp_path / "store").load(unit["run_id"])
    acc = run.metric("mmlu_anatomy", "acc")
    assert acc["n"] == 3 and acc["source"] == "lm-eval" and 0 <= acc["value"] <= 1
    assert run.manifest["harness"][0]["settings"]["batch_size"] == 4

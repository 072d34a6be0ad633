"""Sweep time on a Ray cluster of 2 worker nodes against the same units as sequential `wb eval` calls.

    .venv/bin/python bench/bench_sweep.py [--workdir /tmp/wb-bench-sweep] [--items 8] [--tokens 32]

Units: 3 checkpoints (the default model and two LoRA adapters of it with random B, so each answers its own way)
× 2 suites (contacts task slices, --items items each, greedy, --tokens new tokens), no lm-eval part.

Three ways, each timed end to end from the command's start, in one run:
- sequential: one `wb eval CKPT --suite S --no-harness` process per unit, one after another (what a CI script
  does today): every unit pays the interpreter, torch and transformers imports and the model load;
- local: `wb sweep --local`: one process, each checkpoint's model loaded once for both of its suites;
- ray: `wb sweep --ray ADDRESS` on a ray.cluster_utils.Cluster started before the clock (an existing cluster):
  a head with no CPUs and 2 worker nodes of 1 CPU each, one task per checkpoint.
The ratios: sequential / ray (the target) and sequential / local (the model loads and imports saved, without
parallelism). Every unit's scores and outputs must be equal across the three.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
CONTACTS = REPO / "evals" / "data" / "contacts_test.jsonl"


def build(workdir: Path, items: int, tokens: int) -> tuple[list[str], list[Path]]:
    from random_adapters import random_adapters

    checkpoints = ["default", *map(str, random_adapters(workdir, (1, 2), base_ref="default"))]
    suites = []
    for name, scorers in (("json", "[{type: json_valid}]"), ("fields", "[{type: exact}, {type: json_fields}]")):
        path = workdir / f"{name}.yaml"
        path.write_text(f"name: {name}\ntasks:\n  - name: contacts\n    data: {CONTACTS}\n    limit: {items}\n"
                        f"    generation: {{max_new_tokens: {tokens}, batch_size: 8}}\n    scorers: {scorers}\n")
        suites.append(path)
    return checkpoints, suites


def wb(*args) -> float:
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, "CI": "true"})
    if res.returncode != 0:
        sys.exit(f"wb {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return time.monotonic() - started


def results(store: Path) -> dict[tuple[str, str], dict]:
    """(checkpoint sha, suite) -> metrics and outputs of every eval run in a store."""
    from workbench.store import Store

    st, out = Store(store), {}
    for m in st.list_runs(kind="eval"):
        run = st.load(m["run_id"])
        out[(m["checkpoint"]["sha"], m["suite"])] = {
            "metrics": {(x["task"], x["metric"]): x["value"] for x in run.metrics},
            "outputs": {s["id"]: s["output"] for s in run.samples("contacts")}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/wb-bench-sweep"))
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    import shutil

    args.workdir.mkdir(parents=True, exist_ok=True)
    for old in args.workdir.glob("store-*"):
        shutil.rmtree(old)
    checkpoints, suites = build(args.workdir, args.items, args.tokens)
    sweep = args.workdir / "sweep.yaml"
    sweep.write_text(json.dumps({"checkpoints": checkpoints, "suites": [str(s) for s in suites],
                                 "no_harness": True}))
    wb("eval", "default", "--suite", suites[0], "--no-harness", "--limit", "1",
       "--store", args.workdir / "store-warm")  # the default model converted and the page cache warm, untimed

    seconds = {"sequential": 0.0}
    for ckpt in checkpoints:
        for suite in suites:
            seconds["sequential"] += wb("eval", ckpt, "--suite", suite, "--no-harness",
                                        "--store", args.workdir / "store-sequential")
    seconds["local"] = wb("sweep", sweep, "--local", "--store", args.workdir / "store-local")

    # Ray nices its workers (15) so that its own daemons stay responsive; on this shared benchmark machine that
    # would hand the CPUs to whatever else runs, so the cluster's workers run at the priority the other ways get.
    os.environ["RAY_worker_niceness"] = "0"
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "object_store_memory": 100 * 2**20})
    try:
        for _ in range(2):
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        seconds["ray"] = wb("sweep", sweep, "--ray", cluster.address, "--store", args.workdir / "store-ray")
    finally:
        cluster.shutdown()

    ref = results(args.workdir / "store-sequential")
    same = {way: results(args.workdir / f"store-{way}") == ref for way in ("local", "ray")}
    units = len(checkpoints) * len(suites)
    print(f"units: {len(checkpoints)} checkpoints x {len(suites)} suites = {units}, {args.items} items each, "
          f"{args.tokens} new tokens; {os.cpu_count()} CPUs")
    for way, s in seconds.items():
        print(f"{way:>10}: {s:7.1f} s")
    print(f"sequential / ray (2 worker nodes): {seconds['sequential'] / seconds['ray']:.2f}x")
    print(f"sequential / local sweep (model loads and imports saved): {seconds['sequential'] / seconds['local']:.2f}x")
    print(f"scores and outputs equal to sequential: local {same['local']}, ray {same['ray']} ({len(ref)} units)")
    if not all(same.values()) or len(ref) != units:
        sys.exit(1)


if __name__ == "__main__":
    main()

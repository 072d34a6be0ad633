"""N LoRA adapters of one base on one vLLM engine, against one engine per adapter, on the same items.

    python bench/bench_vllm_loras.py [--workdir /tmp/wb-bench-vllm] [--adapters 3] [--items 20] [--tokens 48]

Needs vLLM where it runs (CUDA, or vLLM's CPU build; see docs/regression.md). Units: the default model's
--adapters LoRA adapters (random B, each answering its own way) × one contacts task slice (--items items,
greedy, --tokens new tokens), no lm-eval part. Two ways, each timed end to end from the command's start:
- one engine per adapter: one `wb eval ADAPTER --suite S --backend vllm` process per adapter, one after another;
  each builds its own engine for the same base;
- one engine: `wb sweep --local` with `backend: vllm`: the adapters are one group, the engine starts once and
  each adapter is a LoRA request on it.
Prints the ratio and the engine starts each way; every adapter's answers must be equal both ways.
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


def build(workdir: Path, adapters: int, items: int, tokens: int) -> tuple[list[Path], Path]:
    from random_adapters import random_adapters

    paths = random_adapters(workdir, range(1, adapters + 1))
    suite = workdir / "contacts-slice.yaml"
    suite.write_text(f"name: contacts-slice\ntasks:\n  - name: contacts\n    data: {CONTACTS}\n    limit: {items}\n"
                     f"    generation: {{max_new_tokens: {tokens}, batch_size: 8}}\n"
                     "    scorers: [{type: exact}, {type: json_fields}]\n")
    return paths, suite


def wb(*args, store: Path) -> tuple[float, str]:
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "workbench", *map(str, args), "--json"], capture_output=True,
                         text=True, env={**os.environ, "CI": "true", "WB_STORE": str(store)})
    seconds = time.monotonic() - started
    if res.returncode:
        sys.exit(f"wb {' '.join(map(str, args))} failed:\n{res.stderr[-3000:]}")
    return seconds, res.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/wb-bench-vllm"))
    parser.add_argument("--adapters", type=int, default=3)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    from workbench.store import Store

    adapters, suite = build(args.workdir, args.adapters, args.items, args.tokens)
    separate_store, sweep_store = args.workdir / "store-separate", args.workdir / "store-sweep"
    separate, separate_s, separate_starts = {}, 0.0, 0
    for adapter in adapters:
        seconds, stdout = wb("eval", adapter, "--suite", suite, "--backend", "vllm", store=separate_store)
        run = Store(separate_store).load(json.loads(stdout)["run_id"])
        separate[str(adapter)] = [s["output"] for s in run.samples("contacts")]
        separate_s += seconds
        separate_starts += run.manifest["runtime"]["vllm"]["engine_starts"]
        print(f"one engine per adapter: {adapter.name} {seconds:.1f} s", flush=True)

    sweep_file = args.workdir / "sweep.yaml"
    sweep_file.write_text(json.dumps({"checkpoints": [str(a) for a in adapters], "suites": [str(suite)],
                                      "backend": "vllm"}))
    sweep_s, stdout = wb("sweep", sweep_file, "--local", store=sweep_store)
    units = json.loads(stdout)["units"]
    runs = {u["checkpoint"]: Store(sweep_store).load(u["run_id"]) for u in units}
    shared = {ckpt: [s["output"] for s in run.samples("contacts")] for ckpt, run in runs.items()}
    engines = {r.manifest["runtime"]["vllm"]["engine"] for r in runs.values()}
    shared_starts = max(r.manifest["runtime"]["vllm"]["engine_starts"] for r in runs.values())
    same = sum(shared[k] == separate[k] for k in separate)
    print(f"one engine (wb sweep --local): {sweep_s:.1f} s")
    print(f"\n{len(adapters)} adapters × {args.items} items, {args.tokens} new tokens")
    print(f"  one engine per adapter: {separate_s:.1f} s, {separate_starts} engine starts")
    print(f"  one engine:             {sweep_s:.1f} s, {shared_starts} engine start ({len(engines)} engine key)")
    print(f"  ratio: {separate_s / sweep_s:.2f}x; adapters with the same answers both ways: {same}/{len(adapters)}")
    if same != len(adapters):
        sys.exit("answers differ between the two ways")


if __name__ == "__main__":
    main()

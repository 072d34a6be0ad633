"""The chat-regression suite (MT-Bench + AlpacaEval 2.0 + IFEval) on the default model under two runtimes, side by
side in one run: the HF checkpoint (transformers) and its Q8_0 GGUF (llama.cpp), each a whole `wb eval` process.
Reports each one's wall time and where it went (the run manifest's timings: each task's generation, its judging,
and lm-eval's IFEval), and, from the measured per-item times, what the full suite (80 + 805 + 541 items) would
take at the same rate.

    WB_DATA_DIR=/work/shared/data .venv/bin/python bench/bench_chat_regression.py [--limit 5]

The Q8_0 file is exported once (`wb export default --format gguf --quant q8_0`) into the bench's folder. The judge
is the suite's (the embedded 135M model on llama.cpp's server). Each side runs in a fresh WB_HOME (its models
linked from the usual one) without lm-eval's request cache, so both pay for every generation and verdict.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FULL = {"mt_bench": 80, "alpaca_eval": 805, "harness[0]": 541}  # items per benchmark in the full suite


def wb(args: list[str], env: dict, log: Path) -> tuple[float, str]:
    started = time.perf_counter()
    with open(log, "w") as fh:
        res = subprocess.run([sys.executable, "-m", "workbench", *args], env=env, stdout=subprocess.PIPE, stderr=fh,
                             text=True, check=False)
    elapsed = time.perf_counter() - started
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): wb {' '.join(args)}; see {log}")
    return elapsed, res.stdout


def shares(manifest: dict) -> dict[str, float]:
    t = manifest["timings"]
    out = {}
    for task in ("mt_bench", "alpaca_eval"):
        judge = t.get(f"{task}.judge", 0.0)
        out[f"{task} generate"] = t[task] - judge
        out[f"{task} judge"] = judge
    out["ifeval (lm-eval)"] = t.get("harness[0]", 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=5, help="items per benchmark")
    parser.add_argument("--keep", type=Path, help="keep the bench folder here (default: a temporary one)")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("WB_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="wb-bench-chat-"))
    folder.mkdir(parents=True, exist_ok=True)
    base_env = {**os.environ, "WB_DATA_DIR": str(data_dir), "WB_STORE": str(folder / "store"),
                "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}
    gguf = next((folder / "gguf").glob("*Q8_0.gguf"), None) if (folder / "gguf").is_dir() else None
    if gguf is None:
        wb(["export", "default", "--format", "gguf", "--quant", "q8_0", "-o", str(folder / "gguf")], base_env,
           folder / "export.log")
        gguf = next((folder / "gguf").glob("*Q8_0.gguf"))
    rows = []
    for name, ref in (("HF (transformers)", "default"), ("Q8_0 (llama.cpp)", str(gguf))):
        home = folder / f"home-{len(rows)}"
        shared = Path(os.environ.get("WB_HOME") or Path.home() / ".cache" / "ckpt-workbench")
        home.mkdir(exist_ok=True)
        for keep in ("models", "weights-sha", "llama.cpp", "hf-datasets"):  # not the judge's or lm-eval's caches
            if (shared / keep).exists() and not (home / keep).exists():
                (home / keep).symlink_to(shared / keep)
        env = {**base_env, "WB_HOME": str(home)}
        elapsed, stdout = wb(["eval", ref, "--suite", "chat-regression", "--limit", str(args.limit), "--no-cache",
                              "--json"], env,
                             folder / f"eval-{len(rows)}.log")
        run_id = json.loads(stdout)["run_id"]
        manifest = json.loads((folder / "store" / "runs" / run_id / "run.json").read_text())
        rows.append((name, elapsed, shares(manifest), manifest["timings"]))
    print(f"chat-regression, --limit {args.limit} (items per benchmark), default model, judge: embedded 135M on "
          "llama.cpp\n")
    print(f"{'runtime':<20} {'wall s':>8}  " + "  ".join(f"{k:>20}" for k in rows[0][2]))
    for name, elapsed, parts, _ in rows:
        total = sum(parts.values())
        print(f"{name:<20} {elapsed:8.1f}  " + "  ".join(f"{v:8.1f} s ({v / total:4.0%})" for v in parts.values()))
    print("\nfull suite at these rates (measured seconds per item x items; an extrapolation, not a measurement):")
    for name, _, _, timings in rows:
        hours = sum(timings.get(k, 0.0) / args.limit * n for k, n in FULL.items()) / 3600
        print(f"  {name:<20} {hours:6.1f} h")
    generate = [sum(v for k, v in parts.items() if "judge" not in k) for _, _, parts, _ in rows]
    print(f"\nllama.cpp / transformers, time outside the judge: {generate[1] / generate[0]:.2f}")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

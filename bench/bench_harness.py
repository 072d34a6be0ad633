"""`wb eval` through lm-eval versus the raw `lm_eval` CLI on the same workload, and a first run versus its
cached rerun, measured side by side in one run. Both sides are whole CLI processes (imports included).

    WB_DATA_DIR=/work/shared/data .venv/bin/python bench/bench_harness.py [--tasks mmlu] [--limit 2] [--repeat 2]

Raw lm_eval reads the same local mirror through a task folder that includes lm-eval's own task YAML and only
overrides the data source (bench/harness_tasks.py). Targets: wb / raw <= 1.05, first / cached >= 20.
Prints the metric values of both sides too: they must be equal.
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
sys.path.insert(0, str(REPO / "bench"))

from harness_tasks import write_override_folder


def timed(cmd: list[str], env: dict, log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as fh:
        res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=fh, text=True, check=False)
    elapsed = time.perf_counter() - started
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}; see {log}")
    log.with_suffix(".stdout").write_text(res.stdout)
    return elapsed


def raw_metrics(out_dir: Path) -> dict:
    [results] = sorted(out_dir.rglob("results_*.json"))
    data = json.loads(results.read_text())["results"]
    return {(task, key.split(",")[0]): value for task, res in data.items() for key, value in res.items()
            if "," in key and "_stderr" not in key and key.split(",")[1] == "none"}


def wb_metrics(stdout: str) -> dict:
    return {(m["task"], m["metric"]): m["value"] for m in json.loads(stdout)["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mmlu")
    parser.add_argument("--limit", default="2")
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--repeat", type=int, default=2, help="alternating raw / wb pairs")
    args = parser.parse_args()

    data_dir = Path(os.environ.get("WB_DATA_DIR", "/work/shared/data")).resolve()
    shared_home = Path(os.environ.get("WB_HOME") or Path.home() / ".cache" / "ckpt-workbench")
    sys.path.insert(0, str(REPO))
    os.environ["WB_HOME"] = str(shared_home)
    from workbench.checkpoints.default_model import ensure_default_model_dir

    model = ensure_default_model_dir()
    work = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    tasks_dir = work / "tasks"
    write_override_folder(data_dir, tasks_dir)
    bin_dir = Path(sys.executable).parent
    common = ["--limit", args.limit, "--batch_size", args.batch_size, "--seed", "1234", "--device", "cpu"]
    wb = [sys.executable, "-m", "workbench", "eval", "default", "--tasks", args.tasks, "--limit", args.limit,
          "--batch-size", args.batch_size, "--seed", "1234", "--device", "cpu", "--dtype", "float32", "--json"]

    def env_for(home: Path) -> dict:
        (home / "models").mkdir(parents=True)  # empty caches, with the default model linked in
        (home / "models" / model.name).symlink_to(model)
        return {**os.environ, "WB_HOME": str(home), "WB_STORE": str(work / "store"), "WB_DATA_DIR": str(data_dir),
                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE",
                "TOKENIZERS_PARALLELISM": "false"}

    print(f"workload: {args.tasks} --limit {args.limit} --batch-size {args.batch_size}, default model, cpu, "
          f"{args.repeat} alternating pairs; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    raw_times, wb_times = [], []
    for i in range(args.repeat):  # alternate raw / wb so that a change in machine load hits both sides
        env = env_for(work / f"home{i}")
        raw = [str(bin_dir / "lm_eval"), "run", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
               "--tasks", args.tasks, "--include_path", str(tasks_dir), "--output_path", str(work / f"raw{i}"),
               *common]
        raw_times.append(timed(raw, env, work / f"raw{i}.log"))
        print(f"[{i}] raw lm_eval          {raw_times[-1]:8.2f} s", flush=True)
        wb_times.append(timed(wb, env, work / f"wb{i}.log"))
        print(f"[{i}] wb eval (first run)  {wb_times[-1]:8.2f} s", flush=True)
    t_cached = timed(wb, env, work / "wb-cached.log")
    print(f"    wb eval (cached)     {t_cached:8.2f} s", flush=True)

    ours = wb_metrics((work / "wb0.stdout").read_text())
    again = wb_metrics((work / "wb-cached.stdout").read_text())
    theirs = raw_metrics(work / "raw0")
    common_keys = sorted(set(ours) & set(theirs))
    worst = max(abs(ours[k] - theirs[k]) for k in common_keys)
    print(f"metrics compared: {len(common_keys)}; max |wb - raw| = {worst:.3g}; cached rerun identical: {again == ours}")
    pairs = ", ".join(f"{w / r:.3f}" for w, r in zip(wb_times, raw_times))
    print(f"ratio wb / raw lm_eval       = {sum(wb_times) / sum(raw_times):.3f}  (per pair: {pairs}; target <= 1.05)")
    print(f"ratio first run / cached     = {wb_times[-1] / t_cached:.1f}  (target >= 20)")
    print(f"load average after: {os.getloadavg()[0]:.2f}; logs in {work}")
    if os.environ.get("BENCH_KEEP") != "1":
        for home in work.glob("home*"):
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

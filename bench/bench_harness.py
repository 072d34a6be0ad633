"""`wb eval` through lm-eval versus the raw `lm_eval` CLI on the same workload, and a first run versus its
cached rerun, measured side by side in one run. Both sides are whole CLI processes (imports included).

    WB_DATA_DIR=/work/shared/data .venv/bin/python bench/bench_harness.py [--tasks mmlu] [--limit 5]

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
    parser.add_argument("--limit", default="5")
    parser.add_argument("--batch-size", default="8")
    args = parser.parse_args()

    data_dir = Path(os.environ.get("WB_DATA_DIR", "/work/shared/data")).resolve()
    shared_home = Path(os.environ.get("WB_HOME") or Path.home() / ".cache" / "ckpt-workbench")
    sys.path.insert(0, str(REPO))
    os.environ["WB_HOME"] = str(shared_home)
    from workbench.models import ensure_default_model

    model = ensure_default_model().path
    work = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    home = work / "home"  # empty caches, with the default model linked in
    (home / "models").mkdir(parents=True)
    (home / "models" / model.name).symlink_to(model)
    tasks_dir = work / "tasks"
    write_override_folder(data_dir, tasks_dir)
    env = {**os.environ, "WB_HOME": str(home), "WB_STORE": str(work / "store"), "WB_DATA_DIR": str(data_dir),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "TOKENIZERS_PARALLELISM": "false"}
    bin_dir = Path(sys.executable).parent
    common = ["--limit", args.limit, "--batch_size", args.batch_size, "--seed", "1234", "--device", "cpu"]
    raw = [str(bin_dir / "lm_eval"), "run", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
           "--tasks", args.tasks, "--include_path", str(tasks_dir), "--output_path", str(work / "raw"), *common]
    wb = [sys.executable, "-m", "workbench", "eval", "default", "--tasks", args.tasks, "--limit", args.limit,
          "--batch-size", args.batch_size, "--seed", "1234", "--device", "cpu", "--dtype", "float32", "--json"]

    print(f"workload: {args.tasks} --limit {args.limit} --batch-size {args.batch_size}, default model, cpu; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    t_raw = timed(raw, env, work / "raw.log")
    print(f"raw lm_eval          {t_raw:8.2f} s", flush=True)
    t_first = timed(wb, env, work / "wb-first.log")
    print(f"wb eval (first run)  {t_first:8.2f} s", flush=True)
    t_cached = timed(wb, env, work / "wb-cached.log")
    print(f"wb eval (cached)     {t_cached:8.2f} s", flush=True)

    ours = wb_metrics((work / "wb-first.stdout").read_text())
    again = wb_metrics((work / "wb-cached.stdout").read_text())
    theirs = raw_metrics(work / "raw")
    common_keys = sorted(set(ours) & set(theirs))
    worst = max(abs(ours[k] - theirs[k]) for k in common_keys)
    print(f"metrics compared: {len(common_keys)}; max |wb - raw| = {worst:.3g}; cached rerun identical: {again == ours}")
    print(f"ratio wb / raw lm_eval       = {t_first / t_raw:.3f}  (target <= 1.05)")
    print(f"ratio first run / cached     = {t_first / t_cached:.1f}  (target >= 20)")
    print(f"load average after: {os.getloadavg()[0]:.2f}; logs in {work}")
    if os.environ.get("BENCH_KEEP") != "1":
        shutil.rmtree(work / "home", ignore_errors=True)


if __name__ == "__main__":
    main()

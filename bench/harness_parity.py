"""Compare `wb eval --json` metrics with a raw `lm_eval --output_path` results file, metric by metric.

    .venv/bin/python bench/harness_parity.py WB.json RAW_OUTPUT_DIR

Prints every (task, metric) and its stderr side by side and the largest absolute difference; exits 1 when any differs by
more than 1e-9 or a metric is missing on one side.
"""

import json
import sys
from pathlib import Path


def raw_metrics(out_dir: Path) -> dict:
    [results] = sorted(Path(out_dir).rglob("results_*.json"))
    data = json.loads(results.read_text())["results"]
    out = {}
    for task, res in data.items():
        for key, value in res.items():
            if "," not in key:
                continue
            metric, filt = key.split(",", 1)
            if value == "N/A":
                value = None
            out[(task, metric if filt == "none" else f"{metric},{filt}")] = value
    return out


def main() -> None:
    wb_path, raw_dir = sys.argv[1], sys.argv[2]
    ours = {}
    for m in json.loads(Path(wb_path).read_text())["metrics"]:
        ours[(m["task"], m["metric"])] = m["value"]
        metric, _, filt = m["metric"].partition(",")  # stderr as lm-eval names it: <metric>_stderr[,<filter>]
        ours[(m["task"], f"{metric}_stderr" + (f",{filt}" if filt else ""))] = m["stderr"]
    theirs = raw_metrics(Path(raw_dir))
    keys = sorted(set(ours) | set(theirs))
    worst = 0.0
    print(f"{'task':42} {'metric':30} {'wb eval':>14} {'raw lm_eval':>14}")
    for key in keys:
        a, b = ours.get(key), theirs.get(key)
        print(f"{key[0]:42} {key[1]:30} {a!s:>14} {b!s:>14}")
        if a is None and b is None:
            continue
        worst = float("inf") if a is None or b is None else max(worst, abs(a - b))
    print(f"{len(keys)} metrics; max |wb - raw| = {worst}")
    sys.exit(0 if worst <= 1e-9 else 1)


if __name__ == "__main__":
    main()

"""Every training method on this machine: N steps of each bundled contacts recipe (or a PEFT variant of the LoRA
one) on the default model, then the contacts task on its first --limit test items, as `wb eval` scores it.

    .venv/bin/python bench/bench_train_methods.py [--steps 8] [--batch-size 4] [--limit 16] [--methods sft-lora,dpo]

Prints one Markdown table on stdout (the libraries' logs go to stderr): steps, seconds per optimizer step (TRL's
train_runtime / steps, model load excluded), the adapter's size on disk, the training loss at the first and last
step, the method's own signal at the last step (DPO/ORPO/KTO: reward margin chosen - rejected; GRPO: mean reward),
and the contacts scores (exact line, JSON fields right) after those steps, with the untrained base on the same
items for reference. A method that fails prints its one-line error in its row.
"""

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

RECIPES = Path(__file__).resolve().parent.parent / "evals" / "recipes"
ALL_LINEAR = "all-linear"

# table row -> (bundled recipe, changes to it)
METHODS = {
    "sft-lora": ("contacts-lora", {}),
    "dora": ("contacts-lora", {"lora": None, "peft": {"type": "dora", "r": 16, "lora_alpha": 32,
                                                       "target_modules": ALL_LINEAR}}),
    "qlora-nf4": ("contacts-qlora", {}),
    "ia3": ("contacts-lora", {"lora": None, "peft": {"type": "ia3"}, "training.learning_rate": 3e-3}),
    "vera": ("contacts-lora", {"lora": None, "peft": {"type": "vera", "r": 128, "target_modules": ["q_proj", "o_proj"]},
                               "training.learning_rate": 3e-3}),
    "dpo": ("contacts-dpo", {}),
    "orpo": ("contacts-orpo", {}),
    "kto": ("contacts-kto", {}),
    "grpo": ("contacts-grpo", {}),
}


def recipe_for(name: str, folder: Path, steps: int, batch: int) -> Path:
    recipe, changes = METHODS[name]
    raw = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text())
    raw["name"] = f"bench-{name}"
    raw["train_data"] = str((RECIPES / raw["train_data"]).resolve())
    raw.pop("data_checks", None)  # the bundled recipes' contamination check is not what this times
    raw["training"].update(max_steps=steps, batch_size=batch, logging_steps=1)
    for key, value in changes.items():
        if key.startswith("training."):
            raw["training"][key.split(".", 1)[1]] = value
        elif value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def contacts_scores(ckpt, store, limit: int) -> dict:
    from workbench.eval.runner import EvalOptions, run_suite
    from workbench.eval.suites import load_suite

    suite = load_suite("contacts", limit=limit)
    started = time.monotonic()
    run = run_suite(ckpt, suite, store, EvalOptions(limit=limit, command="bench_train_methods"))
    values = {m["metric"]: m["value"] for m in run.metrics if m["task"] == "contacts"}
    return {"exact": values["exact"], "json_fields": values["json_fields"], "eval_s": round(time.monotonic() - started, 1)}


def bench_one(name: str, folder: Path, store, args) -> dict:
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.config import TrainConfig, load_yaml_model
    from workbench.train.recipe import train_adapter

    path = recipe_for(name, folder, args.steps, args.batch_size)
    cfg = load_yaml_model(path, TrainConfig)
    out = folder / f"{name}-adapter"
    ckpt, log = train_adapter(cfg, path, out)
    size = sum(p.stat().st_size for p in out.iterdir() if p.name.startswith("adapter_model"))
    runtime = ckpt.extra["train_runtime_s"]
    row = {"method": name, "steps": args.steps, "s_per_step": round(runtime / args.steps, 2),
           "adapter_mb": round(size / 2**20, 2), "first_loss": log[0]["loss"] if log else None,
           "last_loss": log[-1]["loss"] if log else None,
           "last_signal": next((log[-1][k] for k in ("rewards/margins", "reward") if log and k in log[-1]), None)}
    row.update(contacts_scores(resolve_checkpoint(out), store, args.limit))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--limit", type=int, default=16, help="contacts test items scored per method")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")

    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.errors import WorkbenchError
    from workbench.store import Store

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp, contextlib.redirect_stdout(sys.stderr):
        folder = Path(tmp)
        store = Store(folder / "store")
        base = {"method": "base (untrained)", "steps": 0}
        base.update(contacts_scores(resolve_checkpoint("default"), store, args.limit))
        rows.append(base)
        print(f"base: {base}", file=sys.stderr, flush=True)
        for name in names:
            try:
                row = bench_one(name, folder, store, args)
            except (WorkbenchError, RuntimeError, ValueError, TypeError) as exc:  # reported in its row
                row = {"method": name, "error": " ".join(f"{type(exc).__name__}: {exc}".split())[:160]}
            rows.append(row)
            print(f"{name}: {row}", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{args.steps} steps, batch {args.batch_size}, contacts scored on {args.limit} test items\n")
    print("| method | steps | s/step | adapter MB | loss first -> last | last margin/reward | contacts exact "
          "| contacts json_fields |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | failed: {r['error']} | | | | | | |")
            continue
        loss = f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}" if r.get("first_loss") is not None else ""
        signal = f"{r['last_signal']:.3f}" if r.get("last_signal") is not None else ""
        print(f"| {r['method']} | {r['steps']} | {r.get('s_per_step', '')} | {r.get('adapter_mb', '')} | {loss} "
              f"| {signal} | {r['exact']:.3f} | {r['json_fields']:.3f} |")


if __name__ == "__main__":
    main()

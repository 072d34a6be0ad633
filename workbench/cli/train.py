"""`wb train CONFIG.yaml`: a PEFT adapter trained by TRL (sft, dpo, orpo, kto, grpo), recorded in the store."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, store_for
from workbench.cli.output import emit_json
from workbench.system.console import info, library_stdout_to_stderr


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    config: str = typer.Argument(..., help="Training recipe YAML, or the name of a bundled recipe (evals/recipes)."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for the adapter (must be empty or absent)."),
    max_steps: Optional[int] = typer.Option(None, help="Override training.max_steps (>= 1)."),
    allow_contamination: bool = typer.Option(
        False, "--allow-contamination", help="Train even when rows share n-grams with the recipe's data_checks.against."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the last checkpoint in OUT.checkpoints (after a crash or kill)."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Train a PEFT adapter (sft, dpo, orpo, kto or grpo; LoRA, QLoRA, DoRA, IA3, ...) and save it with its lineage."""
    from workbench.config import TrainConfig, load_yaml_model
    from workbench.errors import BadInput
    from workbench.system.content import content_dir

    path = Path(config)
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        path = content_dir("evals") / "recipes" / f"{config}.yaml"
    if not path.exists():
        raise BadInput(f"training config '{config}': no such file")
    if path.is_dir():
        raise BadInput(f"training config '{config}': is a folder, expected a YAML file")
    cfg = load_yaml_model(path, TrainConfig)
    if max_steps is not None:
        if max_steps < 1:  # bad input (exit 3), checked before anything loads
            raise BadInput(f"--max-steps {max_steps}: must be >= 1")
        cfg.training.max_steps = max_steps
    from workbench.store.tracking import check_trackers
    from workbench.system.output_paths import check_new_folder

    check_new_folder(out)
    check_trackers(cfg.report_to, str(path))

    from workbench.system.environment import hardware, versions
    from workbench.train.checkpoints import plan_checkpoints
    from workbench.train.recipe import load_training_rows, prepare_training, train_adapter, training_fingerprint

    loaded = load_training_rows(cfg, path)  # cheap checks first: rows, then their overlap with the eval data
    data_checks = _contamination_gate(cfg, path, loaded.data_path, loaded.rows, allow_contamination)
    inputs = prepare_training(cfg, path, loaded)
    checkpoints = plan_checkpoints(out, training_fingerprint(cfg, inputs), cfg.training.save_steps, resume=resume)
    live_plan = None
    if cfg.eval_during_training:
        from workbench.system.home import data_dir
        from workbench.train.live_eval import prepare_live_eval

        live_plan = prepare_live_eval(cfg.eval_during_training, path, data_dir=data_dir())

    st = store_for(store)
    manifest = {"command": command_line(), "config_path": str(path.resolve()), "config": cfg.model_dump(),
                "seed": cfg.training.seed, "versions": versions(), "data_checks": data_checks,
                "checkpoints_dir": str(checkpoints.root)}
    if checkpoints.resume_from:
        manifest["resumed_from"] = {"checkpoint": str(checkpoints.resume_from), "step": checkpoints.resumed_step}
    if checkpoints.note:
        info(checkpoints.note)
    quantized = f", {cfg.quantization} base" if cfg.quantization else ""
    info(f"training {cfg.name} ({cfg.method}, {inputs.peft_type}{quantized}): {cfg.training.max_steps} steps, "
         f"batch {cfg.training.batch_size}, base {cfg.base}")
    with st.open_run("train", manifest) as run, library_stdout_to_stderr():
        from workbench.store.tracking import trainer_trackers

        report_to, callbacks = trainer_trackers(cfg.report_to, run.path)
        live = None if live_plan is None else _live_eval(live_plan, st, run, cfg, inputs, checkpoints)
        ckpt, log = train_adapter(cfg, path, out, inputs=inputs, checkpoints=checkpoints, report_to=report_to,
                                  callbacks=callbacks + ([live] if live else []), on_log=lambda row: info(
            f"  step {row['step']:>4}  loss {row['loss']:.4f}  ({row['elapsed_s']:.0f} s)"))
        if live:
            run.manifest["eval_during_training"] = live.summary()
            if live.earlier_train_runs:
                run.manifest["resumed_from"]["train_runs"] = live.earlier_train_runs
        run.manifest["checkpoint"] = ckpt.to_dict()
        run.manifest["hardware"] = hardware()
        run.manifest["timings"] = {"train": ckpt.extra.get("train_runtime_s")}
        run.write_samples("train_log", log)
        if log:
            run.add_metric("train", "final_loss", log[-1]["loss"], n=len(log), higher_is_better=False)
            run.add_metric("train", "first_loss", log[0]["loss"], n=len(log), higher_is_better=False)
    stopped = live.stopped if live else None
    summary = {"run_id": run.run_id, "adapter": str(ckpt.path), "steps": ckpt.extra.get("steps_trained"),
               "train_runtime_s": ckpt.extra.get("train_runtime_s"), "final_loss": ckpt.extra.get("final_loss")}
    if stopped:
        summary["stopped_early"] = stopped
    if json_out:
        emit_json(summary)
    else:
        info(f"adapter saved to {ckpt.path} in {summary['train_runtime_s']} s (run {run.run_id})")
    if stopped:  # exit 1, as a failed gate of `wb eval`: the adapter is kept for a look, but it forgot too much
        from workbench.errors import GateFailed

        raise GateFailed(f"training stopped at step {stopped['step']} of {stopped['max_steps']}: forgetting gate "
                         f"'{stopped['gate']}' failed versus the base (run {stopped['base_run']}): {stopped['reason']}; "
                         f"the adapter at step {stopped['step']} is in {ckpt.path}")


def _live_eval(plan, st, run, cfg, inputs, checkpoints):
    from workbench.checkpoints.resolve import portable_base
    from workbench.train.live_eval import live_eval_callback

    return live_eval_callback(plan, st, train_run=run.run_id, base_ckpt=inputs.base,
                              base_ref=portable_base(inputs.base, cfg.base), name=cfg.name, work_dir=checkpoints.root,
                              resuming=checkpoints.resume_from is not None, command=command_line(), on_event=info)


def _contamination_gate(cfg, recipe: Path, data_path: Path, rows: list, allow: bool) -> dict | None:
    """The recipe's contamination check, before any model loads: exit 3 naming the rows, unless allowed."""
    if not cfg.data_checks.against:
        return None
    from workbench.data.check import contaminated
    from workbench.data.eval_sources import against_items
    from workbench.errors import BadInput
    from workbench.system.home import data_dir

    items = against_items(cfg.data_checks.against, data_dir())
    report = contaminated(rows, items, cfg.data_checks.ngram)
    lines = report.contaminated_rows
    record = {"against": cfg.data_checks.against, "ngram": report.n, "eval_items": report.eval_items,
              "contaminated_lines": lines, "allowed": bool(lines) and allow}
    if lines and not allow:
        shown = ", ".join(map(str, lines[:10])) + (" ..." if len(lines) > 10 else "")
        raise BadInput(f"{data_path}: {len(lines)} rows share {report.n}-grams with {', '.join(cfg.data_checks.against)} "
                       f"(lines {shown}); see `wb data check {data_path} --against ...`, or pass --allow-contamination")
    if lines:
        info(f"warning: {len(lines)} training rows overlap the eval data; training anyway (--allow-contamination)")
    return record

"""`workbench.train` (what `wb train` runs): a recipe checked, trained into a PEFT adapter by TRL, and recorded in
the store as a 'train' run with its loss log, data checks and, when the recipe asks, evals during training."""

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.store.runs import Store
from workbench.system.console import info, library_stdout_to_stderr


@dataclass
class TrainResult:
    run_id: str
    checkpoint: Checkpoint  # the adapter at its published path, with its lineage
    log: list[dict] = field(default_factory=list, repr=False)  # the loss log: step, loss, elapsed_s per row
    stopped_early: dict | None = None  # the forgetting gate that stopped training (eval_during_training)

    @property
    def adapter(self) -> Path:
        return self.checkpoint.path

    @property
    def steps(self) -> int | None:
        return self.checkpoint.extra.get("steps_trained")

    @property
    def train_runtime_s(self) -> float | None:
        return self.checkpoint.extra.get("train_runtime_s")

    @property
    def final_loss(self) -> float | None:
        return self.checkpoint.extra.get("final_loss")

    @property
    def stop_reason(self) -> str | None:
        """Why training stopped before max_steps, in a sentence; None when it ran to the end."""
        s = self.stopped_early
        if not s:
            return None
        return (f"training stopped at step {s['step']} of {s['max_steps']}: forgetting gate '{s['gate']}' failed "
                f"versus the base (run {s['base_run']}): {s['reason']}; the adapter at step {s['step']} is in "
                f"{self.adapter}")

    def to_dict(self) -> dict:
        summary = {"run_id": self.run_id, "adapter": str(self.adapter), "steps": self.steps,
                   "train_runtime_s": self.train_runtime_s, "final_loss": self.final_loss}
        if self.stopped_early:
            summary["stopped_early"] = self.stopped_early
        return summary


def train(recipe: str | os.PathLike, output: str | os.PathLike | None = None, *, resume: bool = False,
          max_steps: int | None = None, allow_contamination: bool = False,
          store: Store | str | os.PathLike | None = None, command: str = "workbench.train") -> TrainResult:
    """Train the recipe's adapter (sft, dpo, orpo, kto or grpo; LoRA, QLoRA, DoRA, IA3, ...) into `output`.

    recipe: a training recipe YAML, or the name of a bundled one (evals/recipes, e.g. 'contacts-lora').
    output: a new or empty folder (default: $WB_HOME/adapters/<recipe name>-<UTC time>).
    resume: continue from the last checkpoint in OUTPUT.checkpoints (after a crash or kill).
    max_steps: override training.max_steps. allow_contamination: train even when rows share n-grams with the
    recipe's data_checks.against. store: where the run is recorded (default $WB_STORE, else $WB_HOME/store).
    A training stopped early by its forgetting gate returns with `stopped_early` set (`wb train` exits 1)."""
    from workbench.config import TrainConfig, load_yaml_model
    from workbench.store.tracking import check_trackers
    from workbench.system.output_paths import check_new_folder

    path = recipe_path(recipe)
    cfg = load_yaml_model(path, TrainConfig)
    if max_steps is not None:
        if max_steps < 1:  # bad input (exit 3), checked before anything loads
            raise BadInput(f"--max-steps {max_steps}: must be >= 1")
        cfg.training.max_steps = max_steps
    if output is None:
        if resume:
            raise BadInput("resume needs the output folder of the training to continue")
        output = _default_output(cfg.name)
    out = Path(output)
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

    st = Store.open(store)
    manifest = {"command": command, "config_path": str(path.resolve()), "config": cfg.model_dump(),
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
        from workbench.checkpoints.resolve import portable_base
        from workbench.store.tracking import trainer_trackers
        from workbench.train.live_eval import live_eval_callback

        report_to, callbacks = trainer_trackers(cfg.report_to, run.path)
        live = None if live_plan is None else live_eval_callback(
            live_plan, st, train_run=run.run_id, base_ckpt=inputs.base, base_ref=portable_base(inputs.base, cfg.base),
            name=cfg.name, work_dir=checkpoints.root, resuming=checkpoints.resume_from is not None, command=command,
            on_event=info, chat_template=inputs.chat_template)
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
    return TrainResult(run.run_id, ckpt, log, live.stopped if live else None)


def recipe_path(recipe: str | os.PathLike) -> Path:
    """A recipe file, or the bundled recipe of that name (evals/recipes/NAME.yaml)."""
    from workbench.system.content import content_dir

    path = Path(recipe)
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        path = content_dir("evals") / "recipes" / f"{recipe}.yaml"
    if not path.exists():
        raise BadInput(f"training config '{recipe}': no such file")
    if path.is_dir():
        raise BadInput(f"training config '{recipe}': is a folder, expected a YAML file")
    return path


def _default_output(name: str) -> Path:
    from workbench.system.home import home

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return home() / "adapters" / f"{name}-{stamp}"


def _contamination_gate(cfg, config_path: Path, data_path: Path, rows: list, allow: bool) -> dict | None:
    """The recipe's contamination check, before any model loads: exit 3 naming the rows, unless allowed. Paths in
    data_checks.against are relative to the recipe, as train_data is."""
    if not cfg.data_checks.against:
        return None
    from workbench.data.check import contaminated
    from workbench.data.eval_sources import against_items
    from workbench.system.home import data_dir

    items = against_items(cfg.data_checks.against, data_dir(), relative_to=config_path.parent,
                          where=f"{config_path}: data_checks.against:")
    report = contaminated(rows, items, cfg.data_checks.ngram)
    lines = report.contaminated_rows
    record = {"against": cfg.data_checks.against, "ngram": report.n, "eval_items": report.eval_items,
              "contaminated_lines": lines, "allowed": bool(lines) and allow}
    if lines and not allow:
        shown = ", ".join(map(str, lines[:10])) + (" ..." if len(lines) > 10 else "")
        raise BadInput(f"{data_path}: {len(lines)} rows share {report.n}-grams with "
                       f"{', '.join(cfg.data_checks.against)} (lines {shown}); see `wb data check {data_path} "
                       "--against ...`, or pass --allow-contamination")
    if lines:
        info(f"warning: {len(lines)} training rows overlap the eval data; training anyway (--allow-contamination)")
    return record

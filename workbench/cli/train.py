"""`wb train CONFIG.yaml`: a PEFT adapter trained by TRL (sft, dpo, orpo, kto, grpo), recorded in the store."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line
from workbench.cli.output import emit_json
from workbench.system.console import info


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
    from workbench.train.pipeline import train as train_recipe

    result = train_recipe(config, out, resume=resume, max_steps=max_steps, allow_contamination=allow_contamination,
                          store=store, command=command_line())
    if json_out:
        emit_json(result.to_dict())
    else:
        info(f"adapter saved to {result.adapter} in {result.train_runtime_s} s (run {result.run_id})")
    if result.stopped_early:  # exit 1, as a failed gate of `wb eval`: the adapter is kept, but it forgot too much
        from workbench.errors import GateFailed

        raise GateFailed(result.stop_reason)

"""`wb import-adapter SRC -o DIR`: an MLX-LM or torchtune LoRA adapter converted to a PEFT adapter folder, checked
by logits against the source trainer's own formula (workbench.merge.adapter_import)."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, finite
from workbench.cli.output import emit_json
from workbench.system.console import info


def register(app: typer.Typer) -> None:
    app.command("import-adapter")(import_adapter_cmd)


def import_adapter_cmd(
    src: Path = typer.Argument(..., help="An MLX-LM (adapters.safetensors) or torchtune (adapter_model.pt) adapter "
                                         "folder."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for the PEFT adapter (must be empty or absent)."),
    base: Optional[str] = typer.Option(
        None, "--base", help="The base it was trained on (default: the one its adapter_config.json names)."),
    lora_alpha: Optional[float] = typer.Option(
        None, "--lora-alpha", callback=finite,
        help="torchtune: LoRA alpha, when no adapter_config.json beside the .pt gives it."),
    tolerance: float = typer.Option(1e-3, min=0.0, callback=finite,
                                   help="Largest allowed |logit diff| converted vs source formula."),
    json_out: bool = JsonOpt,
):
    """Convert another trainer's adapter to PEFT and check it by logits."""
    from workbench.merge.adapter_import import import_adapter

    result = import_adapter(src, out, base=base, lora_alpha=lora_alpha, tolerance=tolerance)
    if json_out:
        emit_json(result.to_dict())
        return
    ckpt, report, fmt = result.checkpoint, result.check, result.detected
    info(f"{fmt.label} adapter ({report.modules} modules) imported as PEFT into {ckpt.path} (base {ckpt.base}): "
         f"max |logit diff| {report.max_abs_logit_diff:.3g} vs the {fmt.label} formula over {report.probe_tokens} "
         f"probe tokens (tolerance {report.tolerance:g}; the adapter moves logits by up to "
         f"{report.adapter_effect:.3g})")

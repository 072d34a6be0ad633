"""`wb merge ADAPTER -o DIR`: merge a LoRA adapter into its base, verified against the unmerged logits."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, store_for
from workbench.cli.output import emit_json, info, library_stdout_to_stderr


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)


def merge(
    adapter: str = typer.Argument(..., help="PEFT adapter folder."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for the merged model (must be empty or absent)."),
    tolerance: float = typer.Option(1e-3, min=0.0, help="Largest allowed |logit diff| merged vs base + adapter."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Merge an adapter into its base and check the merged logits."""
    from workbench.checkpoint_checks import resolve_checked
    from workbench.environment import versions
    from workbench.errors import BadInput
    from workbench.merge import merge_adapter
    from workbench.output_paths import check_new_folder

    check_new_folder(out)
    ckpt = resolve_checked(adapter)
    if ckpt.kind != "adapter":
        raise BadInput(f"'{adapter}' is not an adapter folder (no adapter_config.json)")
    st = store_for(store)
    with st.open_run("merge", {"command": command_line(), "checkpoint": ckpt.to_dict(), "versions": versions()}) as run, \
            library_stdout_to_stderr():
        merged, report = merge_adapter(ckpt, out, tolerance=tolerance)
        run.manifest["output"] = merged.to_dict()
        run.add_metric("merge_check", "max_abs_logit_diff", report.max_abs_logit_diff, n=report.probe_tokens,
                       higher_is_better=False)
        run.add_metric("merge_check", "argmax_agreement", report.argmax_agreement, n=report.probe_tokens)
    summary = {"run_id": run.run_id, "merged": str(merged.path), **report.__dict__}
    if json_out:
        emit_json(summary)
    else:
        info(f"merged into {merged.path}: max |logit diff| {report.max_abs_logit_diff:.3g} "
             f"(mean {report.mean_abs_logit_diff:.3g}, argmax agreement {report.argmax_agreement:.4f} "
             f"over {report.probe_tokens} probe tokens, tolerance {report.tolerance:g})")

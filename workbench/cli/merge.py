"""`wb merge ADAPTER -o DIR`: merge a LoRA adapter into its base, verified.

A sharded base merges shard by shard (workbench.merge_stream, the whole model never in memory); a single-file
base, or an adapter the streaming merge cannot do, merges in memory (PEFT merge_and_unload, logits checked)."""

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
    streaming: Optional[bool] = typer.Option(
        None, "--streaming/--in-memory",
        help="Merge shard by shard (default when the base is sharded) or the whole model in memory."),
    check: str = typer.Option(
        "auto", "--check", help="Streaming merges: structure (every tensor there, shaped, finite), logits (also "
                                "merged vs base + adapter logits, loads the model), auto (logits when the model is "
                                "float32 and at most 1 GiB)."),
    tolerance: float = typer.Option(1e-3, min=0.0, help="Largest allowed |logit diff| merged vs base + adapter."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Merge an adapter into its base and check the result."""
    from workbench.checkpoint_checks import resolve_checked
    from workbench.environment import versions
    from workbench.errors import BadInput
    from workbench.merge import merge_adapter
    from workbench.merge_plan import plan_merge
    from workbench.cli.progress import bars
    from workbench.merge_stream import choose_method, merge_streaming, validate_check
    from workbench.output_paths import check_new_folder

    validate_check(check)
    check_new_folder(out)
    ckpt = resolve_checked(adapter)
    if ckpt.kind != "adapter":
        raise BadInput(f"'{adapter}' is not an adapter folder (no adapter_config.json)")
    plan = plan_merge(ckpt)  # the adapter must fit the base (shapes from the headers) before any weights load
    method, note = choose_method(plan, streaming)
    if note:
        info(note)
    st = store_for(store)
    with st.open_run("merge", {"command": command_line(), "checkpoint": ckpt.to_dict(), "versions": versions(),
                               "method": method}) as run, library_stdout_to_stderr(), bars() as progress:
        if method == "streaming":
            merged, stream = merge_streaming(ckpt, out, plan=plan, check=check, tolerance=tolerance,
                                             progress=progress)
            report = stream.logits
        else:
            merged, report = merge_adapter(ckpt, out, tolerance=tolerance)
            stream = None
        run.manifest["output"] = merged.to_dict()
        if report is not None:
            run.add_metric("merge_check", "max_abs_logit_diff", report.max_abs_logit_diff, n=report.probe_tokens,
                           higher_is_better=False)
            run.add_metric("merge_check", "argmax_agreement", report.argmax_agreement, n=report.probe_tokens)
    summary = {"run_id": run.run_id, "merged": str(merged.path), "method": method,
               **({"streaming": {k: v for k, v in stream.to_dict().items() if k != "logits"}} if stream else {}),
               **(report.__dict__ if report else {})}
    if json_out:
        emit_json(summary)
        return
    done = f"merged into {merged.path} ({method}"
    if stream:
        done += (f", {stream.shards} shards, {stream.tensors_merged} tensors merged, "
                 f"{stream.tensors_replaced} replaced; every tensor present, shaped and finite")
    info(done + ")" + (f": max |logit diff| {report.max_abs_logit_diff:.3g} (mean {report.mean_abs_logit_diff:.3g}, "
                       f"argmax agreement {report.argmax_agreement:.4f} over {report.probe_tokens} probe tokens, "
                       f"tolerance {report.tolerance:g})" if report else ""))

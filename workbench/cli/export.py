"""`wb export CHECKPOINT --format gguf --quant q4_k_m ... -o DIR`: export, then verify in the serving runtime."""

import time
from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import StoreOpt, command_line, store_for


def export_command(checkpoint: str, fmt: str, quants: list[str] | str | None, out: Path, keep_f16: bool = False,
                   *, verify: bool = True, progress: bool = True) -> dict:
    """Export `checkpoint` to `fmt` in `out`; returns a JSON-able summary (files, sizes, seconds, verification)."""
    from workbench.checkpoint import resolve_checkpoint, weights_sha
    from workbench.export import get_exporter

    started = time.monotonic()
    exporter = get_exporter(fmt)
    ckpt = resolve_checkpoint(checkpoint, with_sha=False)
    quants = exporter.check(ckpt, quants)  # before anything heavy loads, or even hashing the weights
    ckpt.sha = weights_sha(ckpt.path)
    artifacts = exporter.export(ckpt, Path(out), quants, progress=progress, keep_f16=keep_f16)
    exported = time.monotonic()
    verification = exporter.verify(artifacts, ckpt) if verify else None
    done = time.monotonic()
    return {
        "format": exporter.name,
        "checkpoint": {"name": ckpt.name, "path": str(ckpt.path), "kind": ckpt.kind, "sha": ckpt.sha},
        "out": str(Path(out).resolve()),
        "files": [{"path": str(a.path), "quant": (a.parent or {}).get("quant"), "size_bytes": a.extra.get("size_bytes"),
                   "sha": a.sha, **{k: v for k, v in a.extra.items() if k != "size_bytes"}} for a in artifacts],
        "seconds": {"export": round(exported - started, 2), "verify": round(done - exported, 2) if verify else None},
        "verify": verification,
    }


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    from workbench.cli.output import out

    checks = (summary.get("verify") or {}).get("files", {})
    table = Table(title=f"{summary['format']} export of {summary['checkpoint']['name']} -> {summary['out']}")
    table.add_column("file", overflow="fold")
    for col in ("quant", "size", "prompt = HF", "same answers", "top-1 agree", "mean KL"):
        table.add_column(col)
    for f in summary["files"]:
        name = Path(f["path"]).name
        v = checks.get(name, {})
        n = len((summary.get("verify") or {}).get("prompts", []))
        table.add_row(name, f["quant"], f"{f['size_bytes'] / 2**20:.1f} MiB",
                      str(v.get("prompt_tokens_match", "-")), f"{v['same_answer']}/{n}" if v else "-",
                      f"{v['top1_agreement']:.3f}" if v.get("top1_agreement") is not None else "-",
                      f"{v['mean_kl']:.4f}" if v.get("mean_kl") is not None else "-")
    out.print(table)
    secs = summary["seconds"]
    out.print(f"export {secs['export']} s" + (f", verify {secs['verify']} s" if secs["verify"] is not None else ""))


def _record(run, summary: dict) -> None:
    """The export as a store run: its source checkpoint, and per file its size and what verification measured."""
    run.manifest["checkpoint"] = summary["checkpoint"] | {"format": "hf"}
    run.manifest["outputs"] = summary["files"]
    run.manifest["timings"] = summary["seconds"]
    checks = (summary.get("verify") or {}).get("files", {})
    n_prompts = len((summary.get("verify") or {}).get("prompts", []))
    for f in summary["files"]:
        name = Path(f["path"]).name
        run.add_metric(name, "size_bytes", f.get("size_bytes"), higher_is_better=False, quant=f.get("quant"))
        v = checks.get(name) or {}
        if v.get("mean_kl") is not None:
            run.add_metric(name, "mean_kl", v["mean_kl"], higher_is_better=False, quant=f.get("quant"))
        if v.get("top1_agreement") is not None:
            run.add_metric(name, "top1_agreement", v["top1_agreement"], quant=f.get("quant"))
        if "same_answer" in v:
            run.add_metric(name, "same_greedy_answer", v["same_answer"] / max(n_prompts, 1), n=n_prompts,
                           quant=f.get("quant"))


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        checkpoint: str = typer.Argument(..., help="HF model folder, PEFT adapter, or 'default'"),
        fmt: str = typer.Option("gguf", "--format", "-f", help="export format"),
        quant: list[str] = typer.Option(None, "--quant", "-q", help="quant type(s), repeat or comma-separate"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder (new or empty)"),
        keep_f16: bool = typer.Option(False, "--keep-f16", help="also keep the f16 GGUF the quants are made from"),
        verify: bool = typer.Option(True, "--verify/--no-verify", help="load each file in its runtime and compare"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
        store: Optional[Path] = StoreOpt,
    ) -> None:
        """Export a checkpoint (GGUF via llama.cpp), then verify it against the source, sample by sample."""
        from workbench.cli.output import emit_json
        from workbench.environment import versions
        from workbench.export import get_exporter

        get_exporter(fmt)  # an unknown format fails before the store is touched
        if out.exists() and any(out.iterdir()):
            from workbench.errors import BadInput

            raise BadInput(f"output folder '{out}' is not empty")
        st = store_for(store)
        manifest = {"command": command_line(), "format": fmt, "quants": quant, "versions": versions()}
        with st.open_run("export", manifest) as run:
            summary = export_command(checkpoint, fmt, quant or None, out, keep_f16, verify=verify)
            _record(run, summary)
        summary["run_id"] = run.run_id
        if json_out:
            emit_json(summary)
        else:
            _print_summary(summary)

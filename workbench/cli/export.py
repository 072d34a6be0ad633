"""`wb export CHECKPOINT --format gguf --quant q4_k_m ... -o DIR`: export, then verify in the serving runtime."""

import time
from pathlib import Path

import typer


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
    from rich.console import Console
    from rich.table import Table

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
    console = Console()
    console.print(table)
    secs = summary["seconds"]
    console.print(f"export {secs['export']} s" + (f", verify {secs['verify']} s" if secs["verify"] is not None else ""))


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
    ) -> None:
        """Export a checkpoint (GGUF via llama.cpp), then verify it against the source, sample by sample."""
        from workbench.cli.output import emit_json

        summary = export_command(checkpoint, fmt, quant or None, out, keep_f16, verify=verify)
        if json_out:
            emit_json(summary)
        else:
            _print_summary(summary)

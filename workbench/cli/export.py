"""`wb export CHECKPOINT --format gguf --quant q4_k_m ... -o DIR`: export, then verify in the serving runtime."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import StoreOpt, command_line, finite


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    from workbench.cli.output import out

    checks = (summary.get("verify") or {}).get("files", {})
    table = Table(title=f"{summary['format']} export of {summary['checkpoint']['name']} -> {summary['out']}")
    table.add_column("file", overflow="fold")
    for col in ("quant", "size", "prompt = HF", "same answers", "top-1 agree", "mean KL", "ppl", "smoke", "ollama"):
        table.add_column(col)
    for f in summary["files"]:
        name = Path(f["path"]).name
        v = checks.get(name, {})
        n = len((summary.get("verify") or {}).get("prompts", []))
        table.add_row(name, f["quant"], f"{f['size_bytes'] / 2**20:.1f} MiB",
                      str(v.get("prompt_tokens_match", "-")), f"{v['same_answer']}/{n}" if "same_answer" in v else "-",
                      f"{v['top1_agreement']:.3f}" if v.get("top1_agreement") is not None else "-",
                      f"{v['mean_kl']:.4f}" if v.get("mean_kl") is not None else "-",
                      f"{v['perplexity']:.2f}" if v.get("perplexity") is not None else "-",
                      _smoke_cell(v.get("smoke")), _ollama_cell(f.get("ollama")))
    out.print(table)
    if summary.get("ladder"):
        _print_ladder(summary["ladder"])
    secs = summary["seconds"]
    out.print(f"export {secs['export']} s" + (f", verify {secs['verify']} s" if secs["verify"] is not None else ""))


def _smoke_cell(smoke: dict | None) -> str:
    if not smoke:
        return "-"
    n = smoke["total"]
    return "ok" if smoke["passed"] else (f"stopped {smoke['stopped']}/{n}, clean {smoke['no_leaks']}/{n}, "
                                         f"own turn {smoke['no_invented_turns']}/{n}")


def _ollama_cell(bundle: dict | None) -> str:
    if not bundle:
        return "-"
    if "roundtrip" not in bundle:
        return f"no bundle: {bundle.get('error')}"
    rt = bundle["roundtrip"]
    return f"{rt['matched']}/{rt['total']} same prompt" + ("" if rt["passed"] else f"; {bundle.get('error')}")


def _print_ladder(ladder: dict) -> None:
    from rich.table import Table

    from workbench.cli.output import out

    table = Table(title=f"quant ladder (KLD budget {ladder['kld_budget']})")
    for col in ("quant", "size", "perplexity", "mean KL", "top-1", "tokens/s", "smoke chats", ""):
        table.add_column(col)
    for r in sorted(ladder["rows"], key=lambda r: -r["size_bytes"]):
        mark = "recommended" if r["quant"] == ladder["recommended"] else (
            "within budget" if r["quant"] in ladder["within_budget"] else "")
        table.add_row(r["quant"], f"{r['size_bytes'] / 2**20:.1f} MiB", f"{r['perplexity']:.3f}",
                      f"{r['mean_kl']:.4f}", f"{r['top1_agreement']:.3f}", f"{r['tokens_per_second']:.0f}",
                      {True: "ok", False: "FAILED", None: "-"}[r.get("smoke_passed")], mark)
    out.print(table)
    out.print(f"recommended: {ladder['recommended_file']}" if ladder["recommended"] else
              f"no quant type is within the KLD budget {ladder['kld_budget']}")


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
        heldout: Optional[Path] = typer.Option(None, "--heldout", help="held-out text for perplexity/KL: .txt, or "
                                               ".jsonl of chat items (rendered with the chat template) or {text}"),
        ladder: bool = typer.Option(False, "--ladder", help="export every quant type, measure each, recommend one"),
        kld_budget: Optional[float] = typer.Option(None, "--kld-budget", callback=finite,
                                                  help="ladder: max mean KL (nats) [0.05]"),
        adapter_gguf: bool = typer.Option(False, "--adapter-gguf", help="gguf, adapter input: also the LoRA as a "
                                          "GGUF adapter + base GGUF + Modelfile with ADAPTER"),
        ollama: bool = typer.Option(True, "--ollama/--no-ollama", help="gguf: an Ollama Modelfile per file "
                                    "(refused, exit 3, when no Ollama template reproduces the chat template)"),
        imatrix_data: Optional[Path] = typer.Option(None, "--imatrix-data", help="gguf: importance matrix for the "
                                                    "quantizer from this data (your fine-tune .jsonl or .txt)"),
        calibration: Optional[Path] = typer.Option(None, "--calibration", help="awq/gptq: calibration data (.jsonl "
                                                   "of chat items or {text}, or .txt) [bundled conversations]"),
        store: Optional[Path] = StoreOpt,
    ) -> None:
        """Export a checkpoint (GGUF, AWQ, GPTQ, EXL2), then verify it in its runtime against the source."""
        from workbench.cli.output import emit_json
        from workbench.export.pipeline import export as export_checkpoint

        result = export_checkpoint(checkpoint, fmt, output=out, quants=quant or None, keep_f16=keep_f16, verify=verify,
                                   heldout=heldout, ladder=ladder, kld_budget=kld_budget, adapter_gguf=adapter_gguf,
                                   ollama=ollama, imatrix_data=imatrix_data, calibration=calibration, store=store,
                                   command=command_line())
        if json_out:
            emit_json(result.to_dict())
        else:
            _print_summary(result.to_dict())

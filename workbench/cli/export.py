"""`wb export CHECKPOINT --format gguf --quant q4_k_m ... -o DIR`: export, then verify in the serving runtime."""

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import StoreOpt, command_line, store_for


@dataclass
class ExportPlan:
    exporter: object
    ckpt: object
    quants: list[str]


def plan_export(checkpoint: str, fmt: str, quants: list[str] | str | None, out: Path, *, verify: bool = True,
                heldout: Path | None = None, ladder: bool = False, ollama: bool = True) -> ExportPlan:
    """Everything the user gave, checked before a run is opened or anything heavy loads."""
    from workbench.checkpoints.checks import record_checks
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.errors import BadInput
    from workbench.export import get_exporter
    from workbench.system.output_paths import check_new_folder

    exporter = get_exporter(fmt)
    if ladder and not verify:
        raise BadInput("--ladder measures every quant type: it cannot be combined with --no-verify")
    if ladder and not quants:
        quants = list(exporter.quant_types)
    if heldout is not None and not Path(heldout).is_file():
        raise BadInput(f"held-out text '{heldout}': no such file")
    check_new_folder(Path(out))
    ckpt = resolve_checkpoint(checkpoint, with_sha=False)
    quants = exporter.check(ckpt, quants)  # before anything heavy loads, or even hashing the weights
    if exporter.name == "gguf" and ollama:
        _check_ollama_template(ckpt)
    record_checks(ckpt)
    return ExportPlan(exporter, ckpt, quants)


def export_command(checkpoint: str, fmt: str, quants: list[str] | str | None, out: Path, keep_f16: bool = False,
                   *, verify: bool = True, progress: bool = True, heldout: Path | None = None, ladder: bool = False,
                   kld_budget: float | None = None, plan: ExportPlan | None = None, **export_options) -> dict:
    """Export `checkpoint` to `fmt` in `out`; returns a JSON-able summary (files, sizes, seconds, verification).
    ladder: every quant type of the format (or those in `quants`), measured, the smallest within kld_budget
    recommended. The files are built and verified in a staging folder beside `out` and published only then:
    a failure, Ctrl-C or kill before that leaves `out` as it was."""
    from workbench.checkpoints.checkpoint import weights_sha
    from workbench.store.files import staged_folder
    from workbench.system.faultpoints import pause_point

    started = time.monotonic()
    plan = plan or plan_export(checkpoint, fmt, quants, out, verify=verify, heldout=heldout, ladder=ladder,
                               ollama=export_options.get("ollama", True))
    exporter, ckpt = plan.exporter, plan.ckpt
    ckpt.sha = weights_sha(ckpt.path)
    with staged_folder(Path(out)) as build:
        artifacts = exporter.export(ckpt, build, plan.quants, progress=progress, keep_f16=keep_f16, **export_options)
        exported = time.monotonic()
        pause_point("export-verify")
        verify_options = {"heldout": heldout} if heldout is not None else {}  # passed only when set: every verify()
        verification = exporter.verify(artifacts, ckpt, **verify_options) if verify else None
        failed = failed_bundles(artifacts)
        if failed:  # inside the staging folder: nothing is published
            from workbench.errors import BadInput

            raise BadInput("no Ollama Modelfile for " + "; ".join(failed) + " (nothing published; --no-ollama "
                           "exports without the bundle)")
    for art in artifacts:
        art.path = Path(out) / art.path.name
    done = time.monotonic()
    summary = {
        "format": exporter.name,
        "checkpoint": {"name": ckpt.name, "path": str(ckpt.path), "kind": ckpt.kind, "sha": ckpt.sha},
        "out": str(Path(out).resolve()),
        "files": [{"path": str(a.path), "quant": (a.parent or {}).get("quant"), "size_bytes": a.extra.get("size_bytes"),
                   "sha": a.sha, **{k: v for k, v in a.extra.items() if k != "size_bytes"}} for a in artifacts],
        "seconds": {"export": round(exported - started, 2), "verify": round(done - exported, 2) if verify else None},
        "verify": verification,
    }
    if ladder:
        from workbench.export.gguf.ladder import DEFAULT_KLD_BUDGET, ladder_rows, recommend

        summary["ladder"] = recommend(ladder_rows(summary), DEFAULT_KLD_BUDGET if kld_budget is None else kld_budget)
    return summary


def _check_ollama_template(ckpt) -> None:
    """Refuse before converting when no Ollama template can reproduce the chat template."""
    from workbench.errors import BadInput
    from workbench.export.ollama.bundle import TemplateNotExpressible, derive_template
    from workbench.runtimes.hf import load_tokenizer

    try:
        derive_template(load_tokenizer(ckpt))
    except TemplateNotExpressible as exc:
        raise BadInput(f"checkpoint '{ckpt.path}': no Ollama bundle can serve its chat template: {exc}; "
                       "--no-ollama exports the GGUF files without one") from None


def failed_bundles(artifacts) -> list[str]:
    """'FILE: why' for each GGUF file whose Ollama Modelfile was not written."""
    return [f"{a.path.name}: {a.extra['ollama']['error']}" for a in artifacts
            if (a.extra.get("ollama") or {}).get("error")]


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
            run.add_metric(name, "mean_kl", v["mean_kl"], higher_is_better=False, quant=f.get("quant"),
                           stderr=(v.get("heldout") or {}).get("kl_stderr"),
                           n=(v.get("heldout") or {}).get("n_tokens"))
        if v.get("top1_agreement") is not None:
            run.add_metric(name, "top1_agreement", v["top1_agreement"], quant=f.get("quant"))
        if "same_answer" in v:
            run.add_metric(name, "same_greedy_answer", v["same_answer"] / max(n_prompts, 1), n=n_prompts,
                           quant=f.get("quant"))
        for key, better in (("perplexity", False), ("tokens_per_second", True)):
            if v.get(key) is not None:
                run.add_metric(name, key, v[key], higher_is_better=better, quant=f.get("quant"))
        if v.get("smoke"):
            run.add_metric(name, "smoke_chats_passed", float(v["smoke"]["passed"]), n=v["smoke"]["total"],
                           quant=f.get("quant"))
        if v.get("smoke_chats"):
            run.write_samples(f"smoke-{name}", v["smoke_chats"])
        roundtrip = (f.get("ollama") or {}).get("roundtrip")
        if roundtrip:
            run.add_metric(name, "ollama_template_roundtrip", roundtrip["matched"] / max(roundtrip["total"], 1),
                           n=roundtrip["total"], quant=f.get("quant"))
    if summary.get("ladder"):
        run.manifest["ladder"] = summary["ladder"]


@contextlib.contextmanager
def _tool_logs_into(run):
    """A failed tool's log (kept under WB_HOME by llama_tools.run_logged) moves into the failed run's folder."""
    import shutil

    from workbench.errors import WorkbenchError

    try:
        yield
    except WorkbenchError as exc:
        kept = getattr(exc, "log_file", None)
        if kept is None or not Path(kept).exists():
            raise
        moved = run.path / "logs" / Path(kept).name
        moved.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(kept), moved)
        raise type(exc)(str(exc).replace(str(kept), str(moved))) from None


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
        kld_budget: Optional[float] = typer.Option(None, "--kld-budget", help="ladder: max mean KL (nats) [0.05]"),
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
        from workbench.export import get_exporter
        from workbench.system.console import library_stdout_to_stderr
        from workbench.system.environment import versions

        exporter = get_exporter(fmt)  # an unknown format fails before the store is touched
        if calibration is not None and exporter.name not in ("awq", "gptq"):
            from workbench.errors import BadInput

            raise BadInput(f"--calibration applies to awq and gptq exports, not {exporter.name}")
        for path, what, applies in ((calibration, "--calibration", ("awq", "gptq")),
                                    (imatrix_data, "--imatrix-data", ("gguf",))):
            if path is not None and exporter.name in applies and not path.is_file():  # else the exporter refuses it
                from workbench.errors import BadInput

                raise BadInput(f"{what} '{path}': no such file")
        st = store_for(store)
        plan = plan_export(checkpoint, fmt, quant or None, out, verify=verify, heldout=heldout, ladder=ladder,
                           ollama=ollama)
        manifest = {"command": command_line(), "format": fmt, "quants": quant, "versions": versions()}
        with st.open_run("export", manifest) as run, library_stdout_to_stderr(), _tool_logs_into(run):
            summary = export_command(checkpoint, fmt, quant or None, out, keep_f16, verify=verify, heldout=heldout,
                                     ladder=ladder, kld_budget=kld_budget, plan=plan,
                                     **({"calibration": calibration} if calibration is not None else {}),
                                     **({"adapter_gguf": True} if adapter_gguf else {}),
                                     **({"ollama": False} if not ollama and exporter.name == "gguf" else {}),
                                     **({"imatrix_data": imatrix_data} if imatrix_data is not None else {}))
            _record(run, summary)
        summary["run_id"] = run.run_id
        if json_out:
            emit_json(summary)
        else:
            _print_summary(summary)

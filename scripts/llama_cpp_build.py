"""Build llama-cpp-python from its sdist as a cached wheel, portable by default (stdlib only: set-up runs it
before the workbench is installed).

    python scripts/llama_cpp_build.py SDIST --cache DIR [--variant portable|native|avx2]   # prints the wheel

`portable` is llama.cpp's own release recipe: GGML_NATIVE=OFF, GGML_BACKEND_DL=ON, GGML_CPU_ALL_VARIANTS=ON.
The CPU backend becomes one library per x86-64 level (libggml-cpu-x64.so ... -sapphirerapids.so) and ggml
loads the best one this CPU reports at run time. llama-cpp-python 0.3.36 supports neither half of that, so
the sdist gets two edits before it builds:
  - CMakeLists.txt installs every ggml-cpu-* variant library into the package, not only `ggml-cpu`;
  - llama_cpp/__init__.py loads the backends from the package's lib folder (ggml only searches the
    executable's folder and the cwd, i.e. python's bin and wherever the user is).
`native` (-march=native) and `avx2` are for bench/bench_llama_cpp_build.py only.

The wheel's version carries `+wb.<key>`, a hash of the version, the CMake flags and these edits, and the
package records them in llama_cpp/wb_build.json: a wheel cached by an older set-up is never reused, and
`wb doctor` shows what was built.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# Bump when the edits below change: it is part of the cache key.
EDITS_VERSION = 5
# wb runs no multimodal model: skip building libmtmd (a few minutes on 2 cores). llama-cpp-python imports it
# only for its llava chat handlers.
COMMON = ["-DLLAVA_BUILD=OFF"]
VARIANTS = {
    "portable": ["-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"],
    "native": ["-DGGML_NATIVE=ON"],
    "avx2": ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
             "-DGGML_BMI2=ON", "-DGGML_AVX512=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF"],
}

CMAKE_ANCHOR = "    llama_cpp_python_install_target(ggml-cpu)\n"
CMAKE_EDIT = """\
    # wb: with GGML_CPU_ALL_VARIANTS the CPU backend is one library per instruction-set level; ship them all.
    get_directory_property(WB_GGML_TARGETS DIRECTORY vendor/llama.cpp/ggml/src BUILDSYSTEM_TARGETS)
    foreach(target ${WB_GGML_TARGETS})
        if(target MATCHES "^ggml-cpu-")
            llama_cpp_python_install_target(${target})
        endif()
    endforeach()
"""
# In __init__.py, once llama_cpp's logger is installed, raised to ERROR for the call: ggml would print "load_backend:
# loaded CPU backend from ..." on every import (llama-cpp-python maps ggml's INFO to WARNING: ggml renumbered
# its log levels). Through libllama's handle, so the call reaches the libggml libllama itself
# loaded: a wheel holds libggml.so, .so.0 and .so.0.25.3 as three copies, and loading another copy would register
# the backends in a registry libllama never reads.
LOADER_ANCHOR = "from .llama import *\n"
LOADER_EDIT = """
# wb portable build: load ggml's backends (the best CPU variant for this machine) from this package's lib
# folder; ggml itself only searches the executable's folder and the current directory.
from .llama_cpp import _lib as _wb_lib, _base_path as _wb_base_path
from ._logger import logger as _wb_logger
import ctypes as _wb_ctypes

_wb_lib.ggml_backend_load_all_from_path.argtypes = [_wb_ctypes.c_char_p]
_wb_lib.ggml_backend_load_all_from_path.restype = None
_wb_level = _wb_logger.level
_wb_logger.setLevel(40)  # no "loaded CPU backend from ..." line on every import
try:
    _wb_lib.ggml_backend_load_all_from_path(str(_wb_base_path).encode())
finally:
    _wb_logger.setLevel(_wb_level)
"""


def cmake_args(variant: str) -> list[str]:
    return VARIANTS[variant] + COMMON


def build_key(version: str, variant: str) -> str:
    blob = json.dumps({"version": version, "cmake": cmake_args(variant), "edits": EDITS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def local_version(version: str, variant: str) -> str:
    return f"{version}+wb.{variant}.{build_key(version, variant)}"


def _edit(path: Path, anchor: str, addition: str) -> None:
    text = path.read_text()
    if text.count(anchor) != 1:
        sys.exit(f"error: {path}: expected one '{anchor.strip()}' to patch; this llama-cpp-python source "
                 "differs from the one scripts/llama_cpp_build.py was written for")
    path.write_text(text.replace(anchor, anchor + addition))


def prepare_source(sdist: Path, work: Path, version: str, variant: str) -> Path:
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    src = next(p for p in work.iterdir() if p.is_dir())
    if "-DGGML_BACKEND_DL=ON" in cmake_args(variant):
        _edit(src / "CMakeLists.txt", CMAKE_ANCHOR, CMAKE_EDIT)
        _edit(src / "llama_cpp" / "__init__.py", LOADER_ANCHOR, LOADER_EDIT)
    init = src / "llama_cpp" / "__init__.py"
    text, n = re.subn(r'__version__ = "[^"]+"', f'__version__ = "{local_version(version, variant)}"',
                      init.read_text())
    if n != 1:
        sys.exit(f"error: {init}: no __version__ line to stamp")
    init.write_text(text)
    record = {"llama_cpp_python": version, "variant": variant, "cmake_args": cmake_args(variant),
              "key": build_key(version, variant), "edits_version": EDITS_VERSION}
    (src / "llama_cpp" / "wb_build.json").write_text(json.dumps(record, indent=2) + "\n")
    return src


def sdist_version(sdist: Path) -> str:
    m = re.match(r"llama_cpp_python-(.+)\.tar\.gz$", sdist.name)
    if not m:
        sys.exit(f"error: {sdist}: not a llama_cpp_python-VERSION.tar.gz source archive")
    return m.group(1)


def cached_wheel(cache: Path, version: str, variant: str) -> Path | None:
    hits = sorted(cache.glob(f"llama_cpp_python-{local_version(version, variant)}-*.whl"))
    return hits[0] if hits else None


def build(sdist: Path, cache: Path, variant: str) -> Path:
    version = sdist_version(sdist)
    hit = cached_wheel(cache, version, variant)
    if hit:
        return hit
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wb-llama-build-") as tmp:
        src = prepare_source(sdist, Path(tmp) / "src", version, variant)
        env = dict(os.environ, CMAKE_ARGS=" ".join(cmake_args(variant)),
                   CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 1))
        out = Path(tmp) / "wheel"
        log = Path(tmp) / "build.log"
        with open(log, "w") as fh:
            rc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                                 "-w", str(out), str(src)], env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            kept = cache / f"build-{variant}-failed.log"
            shutil.copy(log, kept)
            sys.exit(f"error: building llama-cpp-python {version} ({variant}) failed; log: {kept}")
        wheel = next(out.glob("*.whl"))
        # Publish by rename so an interrupted build never leaves a wheel that looks complete.
        partial = cache / (wheel.name + ".partial")
        shutil.copy(wheel, partial)
        os.replace(partial, cache / wheel.name)
        return cache / wheel.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sdist", type=Path)
    ap.add_argument("--cache", type=Path, help="folder of built wheels (required to build)")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="portable")
    ap.add_argument("--print-version", action="store_true", help="print the local version this build would have")
    args = ap.parse_args()
    if args.print_version:
        print(local_version(sdist_version(args.sdist), args.variant))
        return
    if args.cache is None:
        ap.error("--cache DIR is required to build")
    if not args.sdist.is_file():
        sys.exit(f"error: {args.sdist}: no such source archive")
    print(build(args.sdist, args.cache, args.variant))


if __name__ == "__main__":
    main()

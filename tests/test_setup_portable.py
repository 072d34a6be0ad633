"""Set-up on any machine: the portable llama.cpp build dispatches CPU kernels at run time, the self-check turns a
crashing component into one line (exit 4), and the environment is the lock's."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.runtimes.llamacpp.build import (
    best_cpu_variant,
    build_record,
    cpu_variant_libraries,
    disabled_variants,
    lib_dir,
    variant_scores,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import llama_cpp_build  # noqa: E402

LOADED = "import llama_cpp; from workbench.runtimes.llamacpp.build import loaded_cpu_variant as v; print(v())"

# A stand-in for a CPU variant this machine only claims to support: ggml scores it above every real one, and its
# backend crashes the moment ggml initializes it, as AVX-512/AMX code does in a VM that does not really run it.
CRASHING_VARIANT_C = r"""
#include <signal.h>
int ggml_backend_score(void) { return 1 << 20; }
void * ggml_backend_init(void) { raise(SIGSEGV); return 0; }
"""


def _child(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def variants():
    found = cpu_variant_libraries(lib_dir())
    if not found:
        pytest.fail("the installed llama-cpp-python has no CPU variant libraries: scripts/setup.sh installs the "
                    "portable build (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS); rerun it")
    return found


@pytest.fixture(scope="module")
def crashing_library(module_tmp):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build the crashing stand-in library")
    folder = module_tmp("crash")
    (folder / "crash.c").write_text(CRASHING_VARIANT_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(folder / "libcrash.so"), str(folder / "crash.c")], check=True)
    return folder / "libcrash.so"


def _lib_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "lib"
    shutil.copytree(lib_dir(), copy, symlinks=True)
    return copy


def test_installed_build_is_the_portable_one(variants):
    record = build_record()
    assert record and record["variant"] == "portable", record
    assert {"-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"} <= set(record["cmake_args"])
    # One library per x86-64 level, from plain x86-64 up to AMX (set-up may have set some aside on this machine).
    shipped = set(variants) | set(disabled_variants(lib_dir()))
    assert {"x64", "sse42", "haswell", "skylakex", "icelake", "alderlake", "sapphirerapids"} <= shipped


def test_llama_cpp_picks_its_cpu_variant_at_run_time(variants, tmp_path):
    res = _child(LOADED)
    assert res.returncode == 0, res.stderr
    loaded = res.stdout.strip()
    # The variant a fresh process maps is the one ggml scores best on this CPU, not a fixed build target...
    assert loaded == best_cpu_variant(variants), loaded
    # ...and without it, the same installed package falls back to the next best at run time.
    folder = _lib_copy(tmp_path)
    (folder / f"libggml-cpu-{loaded}.so").unlink()
    fallback = _child(LOADED, LLAMA_CPP_LIB_PATH=str(folder))
    assert fallback.returncode == 0, fallback.stderr
    assert fallback.stdout.strip() not in (loaded, "None", "builtin")
    assert fallback.stdout.strip() == best_cpu_variant(cpu_variant_libraries(folder))


def test_self_check_sets_a_crashing_variant_aside_and_runs_on_the_next(tmp_path, crashing_library, monkeypatch):
    from workbench.checkpoints.default_model import default_gguf_path
    from workbench.runtimes.llamacpp.build import DISABLED_SUFFIX
    from workbench.runtimes.selfcheck import check_llama_cpp

    folder = _lib_copy(tmp_path)
    shutil.copy(crashing_library, folder / "libggml-cpu-zzcrash.so")
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(folder))
    notes: list[str] = []
    result = check_llama_cpp(default_gguf_path(), notes)
    assert result["tokens_decoded"] > 0 and result["variant"] not in ("zzcrash", None)
    assert len(notes) == 1 and "zzcrash" in notes[0] and "SIGSEGV" in notes[0], notes
    assert (folder / f"libggml-cpu-zzcrash.so{DISABLED_SUFFIX}").exists()
    assert "zzcrash" not in cpu_variant_libraries(folder)


def test_variant_choice_keeps_avx2_only_when_clearly_faster():
    from workbench.runtimes.llamacpp.speed import candidates, decide

    scores = {"x64": 1, "haswell": 70, "alderlake": 0, "icelake": 200, "sapphirerapids": 0}
    assert candidates(scores) == ("icelake", "haswell")
    assert candidates({"x64": 1, "haswell": 70}) is None  # ggml's pick is already the AVX2 one
    assert candidates({"x64": 1, "sse42": 5}) is None  # no AVX2 here
    runs = lambda *ms: [{"total_ms": m} for m in ms]  # noqa: E731
    assert decide("icelake", "haswell", {"icelake": runs(1000, 1010, 990), "haswell": runs(900, 905, 2000)}) \
        == "haswell"
    # 2% faster is within a shared machine's noise: ggml's pick stays.
    assert decide("icelake", "haswell", {"icelake": runs(1000, 1000, 1000), "haswell": runs(980, 981, 979)}) \
        == "icelake"


def test_variant_choice_is_measured_applied_and_reapplied(variants, tmp_path):
    from workbench.checkpoints.default_model import default_gguf_path
    from workbench.runtimes.llamacpp.build import DISABLED_SUFFIX
    from workbench.runtimes.llamacpp.speed import CHOICE_FILE, choose_variant, measure_speed, one_variant_folder

    folder = _lib_copy(tmp_path)
    for path in folder.glob(f"*{DISABLED_SUFFIX}"):  # as the wheel ships, before any choice on this machine
        path.rename(path.with_name(path.name[:-len(DISABLED_SUFFIX)]))
    (folder / CHOICE_FILE).unlink(missing_ok=True)
    # The timing child runs exactly the variant it is given.
    (tmp_path / "one").mkdir()
    only = one_variant_folder(folder, "haswell", tmp_path / "one")
    speed = measure_speed(default_gguf_path(), 16, 4, env={"LLAMA_CPP_LIB_PATH": str(only)})
    assert speed["variant"] == "haswell" and speed["gen_tokens"] > 0 and speed["prompt_tps"] > 0, speed

    scores = variant_scores(cpu_variant_libraries(folder))
    choice = choose_variant(folder, default_gguf_path(), notes := [], rounds=2)
    if choice is None:
        pytest.skip(f"nothing to choose on this CPU (ggml's pick is the AVX2 variant, or no AVX2): {scores}")
    assert json.loads((folder / CHOICE_FILE).read_text()) == choice
    assert set(choice["median"]) == {choice["score_pick"], choice["avx2_pick"]}
    outranking = {v for v, s in scores.items() if s > scores[choice["avx2_pick"]]}
    assert set(choice["set_aside"]) == (outranking if choice["kept"] == choice["avx2_pick"] else set())
    assert bool(notes) == bool(choice["set_aside"])
    loaded = _child(LOADED, LLAMA_CPP_LIB_PATH=str(folder))
    assert loaded.stdout.strip() == choice["kept"], loaded.stderr
    # A reinstall restores the libraries; the choice recorded for this CPU and build is applied again untimed.
    for path in folder.glob(f"*{DISABLED_SUFFIX}"):
        path.rename(path.with_name(path.name[:-len(DISABLED_SUFFIX)]))
    assert choose_variant(folder, default_gguf_path(), [], rounds=0) == choice
    assert set(disabled_variants(folder)) == set(choice["set_aside"])


def test_self_check_turns_a_crash_into_one_line_exit_4(tmp_path, crashing_library, variants):
    folder = _lib_copy(tmp_path)
    for name in cpu_variant_libraries(folder):  # every variant crashes, down to plain x86-64
        shutil.copy(crashing_library, folder / f"libggml-cpu-{name}.so")
    res = subprocess.run([sys.executable, "-m", "workbench", "doctor", "--self-check"], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "LLAMA_CPP_LIB_PATH": str(folder)})
    assert res.returncode == 4, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "llama.cpp" in errors[0] and "SIGSEGV" in errors[0] and "setup.sh" in errors[0], errors[0]
    assert "x64" in errors[0]  # the last variant it tried


def test_wheel_cache_key_covers_the_build_flags(tmp_path):
    keys = {v: llama_cpp_build.local_version("0.3.36", v) for v in llama_cpp_build.VARIANTS}
    assert len(set(keys.values())) == len(keys) and all(k.startswith("0.3.36+wb.") for k in keys.values())
    assert keys["portable"] == llama_cpp_build.local_version("0.3.36", "portable")  # stable
    # A wheel an older set-up cached (native flags, plain version) is never taken for the portable one.
    (tmp_path / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl").write_bytes(b"old")
    assert llama_cpp_build.cached_wheel(tmp_path, "0.3.36", "portable") is None
    named = tmp_path / f"llama_cpp_python-{keys['portable']}-py3-none-linux_x86_64.whl"
    named.write_bytes(b"new")
    assert llama_cpp_build.cached_wheel(tmp_path, "0.3.36", "portable") == named
    assert llama_cpp_build.cached_wheel(tmp_path, "0.3.36", "native") is None


def test_environment_is_the_lock():
    from workbench.system.content import lock_file
    from workbench.system.lock import drift, installed_versions, read_lock

    pins = read_lock(lock_file())
    assert {"torch", "transformers", "peft", "trl", "lm-eval", "llama-cpp-python", "pip"} <= set(pins)
    installed = installed_versions()
    assert drift(pins, installed) == []
    unpinned = sorted(set(installed) - set(pins) - {"ckpt-workbench"})
    assert unpinned == [], f"installed but not in constraints.txt (re-lock: bash scripts/lock.sh): {unpinned}"


def test_doctor_reports_build_variant_and_lock():
    res = subprocess.run([sys.executable, "-m", "workbench", "doctor", "--json"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    llama = report["llama_cpp_build"]
    assert llama["build"]["variant"] == "portable" and llama["loaded_variant"] in llama["variants"]
    assert report["lock"]["pinned"] > 50 and report["lock"]["drift"] == []

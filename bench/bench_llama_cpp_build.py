"""Tokens/s of the portable llama.cpp build against a native (-march=native) build and an AVX2-only build, on
this machine, side by side in one run.

    .venv/bin/python bench/bench_llama_cpp_build.py [--repeats 5] [--prompt-tokens 256] [--gen-tokens 64]

Each build is a wheel from scripts/llama_cpp_build.py (built on first use into the wheel cache: the native and
AVX2 ones take a few minutes each), unpacked into $WB_HOME/bench/llama-builds/ and imported by a fresh child
process through PYTHONPATH, so the three never mix. A child loads the default model's GGUF, evaluates a prompt
and generates greedily; the figures are llama.cpp's own counters (llama_perf_context). A build that crashes
on this CPU is reported as such: that is the point of the portable one. The portable copy first gets set-up's
CPU-variant choice (ggml's pick by CPU features timed against the best AVX2 variant, the faster kept), so its row
is the portable build as a user's set-up leaves it on this machine. Rounds alternate the builds (each
leads in turn); the table shows medians, and the ratio portable / AVX2-only, which must be >= 1.0 here.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import llama_cpp_build  # noqa: E402

from workbench.runtimes.llamacpp.build import DISABLED_SUFFIX  # noqa: E402
from workbench.runtimes.llamacpp.speed import CHOICE_FILE, choose_variant, measure_speed  # noqa: E402

BUILDS = ["portable", "avx2", "native"]

def unpacked(wheel: Path, root: Path) -> Path:
    target = root / wheel.stem
    if not (target / "llama_cpp").is_dir():
        tmp = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        for so in (tmp / "llama_cpp" / "lib").glob("*.so*"):
            so.chmod(0o755)
        tmp.rename(target)
    return target


def measure(site: Path, gguf: Path, args) -> dict:
    return measure_speed(gguf, args.prompt_tokens, args.gen_tokens, args.threads,
                         env={"PYTHONPATH": f"{site}{os.pathsep}{REPO}", "LLAMA_CPP_LIB_PATH": None})


def as_set_up_leaves_it(site: Path, gguf: Path) -> dict | None:
    """The portable copy with set-up's measured CPU-variant choice applied afresh (workbench/runtimes/llamacpp/speed.py)."""
    lib = site / "llama_cpp" / "lib"
    for path in lib.glob(f"*{DISABLED_SUFFIX}"):
        path.rename(path.with_name(path.name[:-len(DISABLED_SUFFIX)]))
    (lib / CHOICE_FILE).unlink(missing_ok=True)
    return choose_variant(lib, gguf, [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--sdist", type=Path, default=None)
    args = ap.parse_args()

    from workbench.checkpoints.default_model import default_gguf_path
    from workbench.system.home import home
    from workbench.system.lock import read_lock

    version = read_lock(REPO / "constraints.txt")["llama-cpp-python"]
    sdist = args.sdist or Path(os.environ.get("WB_SDIST_CACHE", Path.home() / ".cache/ckpt-workbench/sdists")) \
        / f"llama_cpp_python-{version}.tar.gz"
    wheels = Path(os.environ.get("WB_WHEEL_CACHE", Path.home() / ".cache/ckpt-workbench/wheels"))
    root = home() / "bench" / "llama-builds"
    root.mkdir(parents=True, exist_ok=True)
    sites = {}
    for build in BUILDS:
        if not llama_cpp_build.cached_wheel(wheels, version, build):
            print(f"building the {build} wheel (a few minutes)", file=sys.stderr, flush=True)
        sites[build] = unpacked(llama_cpp_build.build(sdist, wheels, build), root)
    gguf = default_gguf_path()
    choice = as_set_up_leaves_it(sites["portable"], gguf)
    runs: dict[str, list[dict]] = {b: [] for b in BUILDS}
    for r in range(args.repeats):
        for build in BUILDS[r % len(BUILDS):] + BUILDS[:r % len(BUILDS)]:  # each build leads a round in turn
            runs[build].append(measure(sites[build], gguf, args))
            print(f"round {r + 1}/{args.repeats} {build}: {runs[build][-1]}", file=sys.stderr, flush=True)

    rows = {}
    for build in BUILDS:
        ok = [m for m in runs[build] if "error" not in m]
        if not ok:
            rows[build] = {"error": runs[build][0]["error"]}
            continue
        rows[build] = {
            "variant": ok[0]["variant"],
            "prompt_tps": statistics.median(m["prompt_tokens"] / m["prompt_ms"] * 1000 for m in ok),
            "gen_tps": statistics.median(m["gen_tokens"] / m["gen_ms"] * 1000 for m in ok),
            "runs": len(ok),
        }
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown CPU")
    print(f"\nllama.cpp {version}, default GGUF {gguf.name}, {args.prompt_tokens}-token prompt, {args.gen_tokens} "
          f"generated, {args.threads} threads, {cpu}; medians of {args.repeats} alternating rounds\n")
    print("| build | CPU variant loaded | prompt tok/s | generation tok/s |")
    print("|---|---|---|---|")
    for build in BUILDS:
        row = rows[build]
        if "error" in row:
            print(f"| {build} | {row['error']} | - | - |")
        else:
            print(f"| {build} | {row['variant']} | {row['prompt_tps']:.1f} | {row['gen_tps']:.1f} |")
    p, a = rows["portable"], rows["avx2"]
    if "error" not in p and "error" not in a:
        print(f"\nportable / AVX2-only: prompt {p['prompt_tps'] / a['prompt_tps']:.3f}, "
              f"generation {p['gen_tps'] / a['gen_tps']:.3f}")
    if choice:
        med = choice["median"]
        print(f"set-up's CPU-variant choice for the portable build: kept {choice['kept']} "
              + ", ".join(f"{v}: prompt {m['prompt_tps']:.1f}, generation {m['gen_tps']:.1f} tok/s"
                          for v, m in med.items()) + f" ({choice['rounds']} rounds of its own)")
    n = rows["native"]
    if "error" not in p and "error" not in n:
        print(f"portable / native:   prompt {p['prompt_tps'] / n['prompt_tps']:.3f}, "
              f"generation {p['gen_tps'] / n['gen_tps']:.3f}")


if __name__ == "__main__":
    main()

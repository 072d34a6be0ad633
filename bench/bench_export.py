"""GGUF export through `wb` vs llama.cpp's own tools called directly, same model, same quant, one run
(target: wb / direct <= 1.1).

    python bench/bench_export.py [--model default|PATH] [--quant q4_k_m] [--repeats 3]

direct: `python convert_hf_to_gguf.py MODEL --outtype f16` (the same converter script wb runs, from the
llama-cpp-python sdist) then llama.cpp's quantizer (llama_model_quantize, what the llama-quantize binary
calls), each in a fresh process like a user would type them.
wb: `python -m workbench export MODEL -q QUANT -o DIR --no-verify` in a fresh process: the same two steps plus
its checks (config, chat template embedded), staging and publishing, the Ollama bundle with its template
round-trip check, checksums and the store record. Verification is off on the wb side because the direct side
has none. Runs alternate (direct, wb, direct, wb, ...) so load on the machine hits both alike; medians compared.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUANTIZE = """
import sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, sys.argv[3])
p.nthread = int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))
"""


def run_direct(tools, model: Path, quant: str, work: Path) -> float:
    from workbench.export.gguf.exporter import QUANT_TYPES
    from workbench.runtimes.llamacpp.model import cpu_threads

    f16, final = work / "model-F16.gguf", work / f"model-{quant.upper()}.gguf"
    started = time.perf_counter()
    subprocess.run([sys.executable, str(tools.convert_hf), str(model), "--outtype", "f16", "--outfile", str(f16)],
                   env=tools.env(), check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", QUANTIZE, str(f16), str(final), QUANT_TYPES[quant], str(cpu_threads())],
                   check=True, capture_output=True)
    return time.perf_counter() - started


def run_wb(model: str, quant: str, work: Path) -> float:
    env = dict(os.environ, WB_STORE=str(work / "store"))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "workbench", "export", model, "-q", quant, "-o", str(work / "out"),
                           "--no-verify", "--json"], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"wb export failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--quant", default="q4_k_m")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from workbench.checkpoints.default_model import ensure_default_model_dir
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.runtimes.llamacpp.tools import locate_tools

    model = ensure_default_model_dir() if args.model == "default" else resolve_checkpoint(args.model).path
    tools = locate_tools()
    times: dict[str, list[float]] = {"direct": [], "wb": []}
    root = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        for i in range(args.repeats):
            for side in ("direct", "wb"):
                work = root / f"{side}-{i}"
                work.mkdir()
                seconds = run_direct(tools, model, args.quant, work) if side == "direct" else \
                    run_wb(args.model, args.quant, work)
                times[side].append(seconds)
                print(f"run {i + 1}/{args.repeats} {side:>6}: {seconds:6.2f} s", flush=True)
                shutil.rmtree(work)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    direct, wb = statistics.median(times["direct"]), statistics.median(times["wb"])
    ratio = wb / direct
    print(f"\nmodel {model.name}, {args.quant}, {args.repeats} alternating runs each (median):")
    print(f"  llama.cpp directly (convert_hf_to_gguf.py + llama_model_quantize): {direct:.2f} s")
    print(f"  wb export --no-verify:                                            {wb:.2f} s")
    print(f"  ratio wb / direct: {ratio:.3f} (target <= 1.1) -> {'OK' if ratio <= 1.1 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()

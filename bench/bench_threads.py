"""Threads per process when two processes share the cores (two test workers, two jobs on one CI runner, Ray units):
each process on every core against each on its share (OMP_NUM_THREADS = cores / 2), side by side in one run.

    .venv/bin/python bench/bench_threads.py [--tokens 250] [--repeats 3]

1. llama.cpp: greedy single-token decoding of the default GGUF (wb's load_gguf, whose threads are
   runtimes.llamacpp.native.cpu_threads()), two processes at once, then one alone; under OMP_WAIT_POLICY=PASSIVE
   (what wb sets, for torch) and ACTIVE (OpenMP threads spin between parallel regions; llama.cpp's own default).
2. transformers: the default model's HF checkpoint generating 60 tokens for 8 prompts (wb's HF path, fp32), the
   same way, under PASSIVE.
Each row is the slower of the two concurrent processes; the ratio is every-core over share.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LLAMA = """
import sys, time
from workbench.checkpoints.default_model import default_gguf_path
from workbench.runtimes.llamacpp.model import load_gguf
llm = load_gguf(default_gguf_path(), n_ctx=1024)
toks = llm.tokenize(b"Write a long story about a cat.")
started = time.perf_counter()
for _ in range(int(sys.argv[2])):
    llm.reset(); llm.eval(toks)
    for i in range(int(sys.argv[1])):
        llm.eval([toks[i % len(toks)]])
print(time.perf_counter() - started)
"""

TORCH = """
import sys, time, torch
from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.runtimes.hf import load_model
model = load_model(resolve_checkpoint("default"))
ids = torch.randint(0, 40000, (8, 60), generator=torch.Generator().manual_seed(0))
started = time.perf_counter()
with torch.no_grad():
    for _ in range(int(sys.argv[2])):
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=60, min_new_tokens=60,
                       do_sample=False)
print(time.perf_counter() - started)
"""


def timed(script: str, threads: int, copies: int, args: list[str], policy: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": policy, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(copies)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a benchmark process failed (threads {threads})")
    return max(float(out.strip().splitlines()[-1]) for out in outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    share = max(1, cores // 2)
    print(f"{cores} cores; every core = {cores} threads per process, share = {share}")
    print(f"{'runtime':<14}{'wait policy':>12}{'processes':>10}{'every core s':>14}{'share s':>10}{'ratio':>8}")
    llama = [str(args.tokens), str(args.repeats)]
    for name, script, extra, policy in (("llama.cpp", LLAMA, llama, "PASSIVE"), ("llama.cpp", LLAMA, llama, "ACTIVE"),
                                        ("transformers", TORCH, ["1", str(args.repeats)], "PASSIVE")):
        for copies in (2, 1):
            every = timed(script, cores, copies, extra, policy)
            shared = timed(script, share, copies, extra, policy)
            print(f"{name:<14}{policy:>12}{copies:>10}{every:>14.1f}{shared:>10.1f}{every / shared:>8.2f}")


if __name__ == "__main__":
    main()

"""Set-up's self-check: each native component runs once in a child process, so a crash (a CPU the build does
not suit, a broken wheel) becomes one line naming the component and its fix instead of a dead demo later.

- llama.cpp: one decode of the default GGUF. A portable build (see scripts/llama_cpp_build.py) loads the best
  CPU variant library for this CPU; when that variant crashes (AVX-512/AMX code in a VM that advertises but
  does not really support it), the variant is set aside and the check runs again on the next best one. Then the
  variant ggml picks by CPU features is timed against the best AVX2 one, and the faster kept
  (workbench/runtimes/llamacpp/speed.py).
- transformers: one forward of the default model.
"""

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import EnvironmentProblem
from workbench.runtimes.llamacpp.build import DISABLED_SUFFIX

BASELINE_VARIANT = "x64"  # plain x86-64: if it crashes, no variant will run
TIMEOUT_S = 600

LLAMA_CHILD = r"""
import json, sys
import llama_cpp
from workbench.runtimes.llamacpp.build import loaded_cpu_variant
print(json.dumps({"variant": loaded_cpu_variant()}), flush=True)
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=128, n_threads=1, verbose=False)
tokens = llm.tokenize(b"The capital of France is")
llm.eval(tokens)
print(json.dumps({"decoded": len(tokens), "variant": loaded_cpu_variant()}), flush=True)
"""

TRANSFORMERS_CHILD = r"""
import json
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from workbench.checkpoints.default_model import ensure_default_model_dir
path = str(ensure_default_model_dir())  # converted from its GGUF on the first run: transformers' work too
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
ids = tok("The capital of France is", return_tensors="pt").input_ids
with torch.no_grad():
    logits = model(ids).logits
assert torch.isfinite(logits).all(), "non-finite logits"
print(json.dumps({"forward": list(logits.shape)}), flush=True)
"""


@dataclass
class ChildResult:
    returncode: int
    lines: list[dict] = field(default_factory=list)
    stderr_tail: str = ""

    @property
    def crashed(self) -> bool:
        return self.returncode < 0

    def last(self, key: str):
        for line in reversed(self.lines):
            if key in line:
                return line[key]
        return None


def _run_child(code: str, *args: str) -> ChildResult:
    try:
        res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                             env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1"))
    except subprocess.TimeoutExpired:
        return ChildResult(124, [], f"no answer within {TIMEOUT_S} s")
    lines = []
    for raw in res.stdout.splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return ChildResult(res.returncode, lines, res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "")


def _signal_name(returncode: int) -> str:
    try:
        return f"{signal.Signals(-returncode).name} (signal {-returncode})"
    except ValueError:
        return f"signal {-returncode}"


def _failure(component: str, res: ChildResult, fix: str) -> EnvironmentProblem:
    how = (f"crashed with {_signal_name(res.returncode)}" if res.crashed
           else f"failed (exit {res.returncode}: {res.stderr_tail or 'no message'})")
    return EnvironmentProblem(f"self-check: {component} {how}; {fix}")


def check_llama_cpp(gguf: Path, notes: list[str]) -> dict:
    from workbench.runtimes.llamacpp.build import best_cpu_variant, cpu_variant_libraries, lib_dir

    fix = ("rebuild it portable: rm -rf ~/.cache/ckpt-workbench/wheels .venv && bash scripts/setup.sh "
           "(see `wb doctor` for the build flags)")
    while True:
        res = _run_child(LLAMA_CHILD, str(gguf))
        if res.returncode == 0:
            return {"variant": res.last("variant"), "tokens_decoded": res.last("decoded")}
        variants = cpu_variant_libraries(lib_dir())
        if not res.crashed or not variants:
            raise _failure("llama.cpp (one decode of the default GGUF)", res, fix)
        # The variant it had loaded, or, when it died while loading one, the one ggml picks by its scores.
        variant = res.last("variant") or best_cpu_variant(variants)
        if variant not in variants or variant == BASELINE_VARIANT:
            raise _failure(f"llama.cpp (one decode of the default GGUF, CPU variant {variant or 'unknown'})",
                           res, fix)
        path = variants[variant]
        path.rename(path.with_name(path.name + DISABLED_SUFFIX))
        notes.append(f"llama.cpp's {variant} CPU variant crashed with {_signal_name(res.returncode)} on this "
                     f"machine: set aside as {path.name}{DISABLED_SUFFIX}; trying the next best variant")


def check_transformers() -> dict:
    res = _run_child(TRANSFORMERS_CHILD)
    if res.returncode != 0:
        raise _failure("transformers (one forward of the default model)", res,
                       "reinstall torch for this CPU: .venv/bin/pip install --force-reinstall torch==2.13.0")
    return {"logits_shape": res.last("forward")}


def self_check(notes: list[str]) -> dict:
    """Both checks, llama.cpp first; raises EnvironmentProblem (exit 4) with one line on the first failure."""
    from workbench.checkpoints.default_model import default_gguf_path
    from workbench.runtimes.llamacpp.build import lib_dir
    from workbench.runtimes.llamacpp.speed import choose_variant

    gguf = default_gguf_path()
    report = {"llama.cpp": check_llama_cpp(gguf, notes)}
    choice = choose_variant(lib_dir(), gguf, notes) if lib_dir() else None
    if choice and choice["set_aside"]:
        report["llama.cpp"] = check_llama_cpp(gguf, notes)  # the kept variant decodes too
    report["llama.cpp"]["variant_choice"] = choice
    report["transformers"] = check_transformers()
    return report

"""Which of a portable llama.cpp's CPU variants is fastest here, measured rather than assumed.

ggml loads the variant with the highest CPUID score, i.e. the one using the most instruction-set extensions. That
is not always the fastest: on some VMs the AVX-512 variants (icelake, skylakex, ...) run the default model
slower than the AVX2 one (haswell). Set-up times the score's pick against the best AVX2 variant on the default
GGUF, in alternating rounds, and when the AVX2 variant is faster by more than MARGIN, sets aside every variant
that outranks it (the same `.disabled-by-wb` rename as a crashing variant), so ggml's own rule then loads it.
The figures are kept beside the libraries in `wb_variant_choice.json`, which `wb doctor` shows.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from workbench.runtimes.llamacpp.build import (
    DISABLED_SUFFIX,
    VARIANT_PREFIX,
    build_record,
    cpu_variant_libraries,
    json_file,
    variant_scores,
)

CHOICE_FILE = "wb_variant_choice.json"
AVX2_VARIANTS = ("alderlake", "haswell")  # AVX2 + FMA, without AVX-512; ggml's scores rank alderlake higher
MARGIN = 0.03  # a faster AVX2 variant must win by more than run-to-run noise on a shared machine
ROUNDS = 5
PROMPT_TOKENS, GEN_TOKENS = 128, 32

SPEED_CHILD = r"""
import json, sys
import llama_cpp
from workbench.runtimes.llamacpp.build import loaded_cpu_variant
path, n_prompt, n_gen, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=path, n_ctx=n_prompt + n_gen + 8, n_batch=n_prompt, n_threads=threads,
                      verbose=False, seed=0)
text = ("The quick brown fox jumps over the lazy dog. " * 200).encode()
tokens = llm.tokenize(text)[:n_prompt]
llm.create_completion(tokens, max_tokens=n_gen, temperature=0.0, repeat_penalty=1.0)
perf = llama_cpp.llama_perf_context(llm.ctx)
print(json.dumps({"variant": loaded_cpu_variant(), "prompt_tokens": perf.n_p_eval, "prompt_ms": perf.t_p_eval_ms,
                  "gen_tokens": perf.n_eval, "gen_ms": perf.t_eval_ms}))
"""


def measure_speed(gguf: Path, n_prompt: int = PROMPT_TOKENS, n_gen: int = GEN_TOKENS, threads: int | None = None,
                  env: dict | None = None) -> dict:
    """One prompt evaluation and greedy generation in a fresh child, by llama.cpp's own counters; `env` picks the
    build (PYTHONPATH) or the library folder (LLAMA_CPP_LIB_PATH; None unsets). A crash is reported, not raised."""
    threads = threads or len(os.sched_getaffinity(0))
    child_env = {k: v for k, v in {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}.items() if v is not None}
    res = subprocess.run([sys.executable, "-c", SPEED_CHILD, str(gguf), str(n_prompt), str(n_gen), str(threads)],
                         capture_output=True, text=True, env=child_env, timeout=600)
    if res.returncode != 0:
        how = f"crashed (signal {-res.returncode})" if res.returncode < 0 else f"failed (exit {res.returncode})"
        return {"error": how, "detail": res.stderr.strip().splitlines()[-1:]}
    m = json.loads(res.stdout.strip().splitlines()[-1])
    m["prompt_tps"] = m["prompt_tokens"] / m["prompt_ms"] * 1000
    m["gen_tps"] = m["gen_tokens"] / m["gen_ms"] * 1000
    m["total_ms"] = m["prompt_ms"] + m["gen_ms"]
    return m


def one_variant_folder(lib: Path, variant: str, into: Path) -> Path:
    """A library folder holding links to `lib`'s libraries with `variant` as its only CPU variant."""
    for path in lib.iterdir():
        is_variant = path.name.startswith(VARIANT_PREFIX)
        if not is_variant or path.name == f"{VARIANT_PREFIX}{variant}.so":
            (into / path.name).symlink_to(path.resolve())
    return into


def candidates(scores: dict[str, int]) -> tuple[str, str] | None:
    """(ggml's pick, the best AVX2 variant) when they differ and both run here, else None."""
    runnable = {k: v for k, v in scores.items() if v > 0}
    if not runnable:
        return None
    top = max(runnable, key=runnable.get)
    avx2 = [v for v in AVX2_VARIANTS if v in runnable]
    if not avx2:
        return None
    best_avx2 = max(avx2, key=runnable.get)
    return None if best_avx2 == top else (top, best_avx2)


def decide(top: str, avx2: str, runs: dict[str, list[dict]]) -> str:
    """The variant to keep: the AVX2 one only when its median workload time beats the top's by more than MARGIN."""
    med = {v: statistics.median(m["total_ms"] for m in runs[v]) for v in (top, avx2)}
    return avx2 if med[avx2] * (1 + MARGIN) < med[top] else top


def _machine(lib: Path) -> dict:
    """What a recorded choice holds for: this CPU model and the llama.cpp build in `lib`'s package."""
    build = (build_record(lib.parent) or {}).get("key")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    return {"cpu": cpu, "build": build}


def _set_aside(variants: dict[str, Path], names: list[str]) -> None:
    for v in names:
        if v in variants:
            variants[v].rename(variants[v].with_name(variants[v].name + DISABLED_SUFFIX))


def choose_variant(lib: Path, gguf: Path, notes: list[str], rounds: int = ROUNDS) -> dict | None:
    """Time ggml's pick against the best AVX2 variant and set aside the variants that outrank a faster AVX2 one.
    A choice recorded for this CPU and build is re-applied (a reinstall restores the libraries) without timing
    again. Returns the choice, or None when there is nothing to choose (one CPU backend, or no AVX2 here)."""
    variants = cpu_variant_libraries(lib)
    recorded = recorded_choice(lib)
    if recorded and recorded.get("machine") == _machine(lib):
        _set_aside(variants, recorded["set_aside"])
        return recorded
    scores = variant_scores(variants)
    pair = candidates(scores)
    if pair is None:
        return None
    top, avx2 = pair
    runs: dict[str, list[dict]] = {top: [], avx2: []}
    with tempfile.TemporaryDirectory(prefix="wb-variant-") as tmp:
        folders = {}
        for v in pair:
            (Path(tmp) / v).mkdir()
            folders[v] = one_variant_folder(lib, v, Path(tmp) / v)
        for r in range(rounds):
            for v in (pair if r % 2 == 0 else pair[::-1]):  # each leads in turn
                m = measure_speed(gguf, env={"LLAMA_CPP_LIB_PATH": str(folders[v])})
                if "error" in m:
                    return None  # the crash check already ran; a failure here leaves ggml's own choice
                runs[v].append(m)
    keep = decide(top, avx2, runs)
    set_aside = sorted(v for v, s in scores.items() if s > scores[avx2]) if keep == avx2 else []
    _set_aside(variants, set_aside)
    choice = {"kept": keep, "score_pick": top, "avx2_pick": avx2, "set_aside": set_aside, "machine": _machine(lib),
              "rounds": rounds, "workload": {"prompt_tokens": PROMPT_TOKENS, "gen_tokens": GEN_TOKENS},
              "median": {v: {k: round(statistics.median(m[k] for m in runs[v]), 1)
                             for k in ("prompt_tps", "gen_tps", "total_ms")} for v in pair}}
    (lib / CHOICE_FILE).write_text(json.dumps(choice, indent=2) + "\n")
    if set_aside:
        t, a = choice["median"][top], choice["median"][avx2]
        notes.append(f"llama.cpp's {avx2} CPU variant is faster here than {top}, ggml's pick by CPU features "
                     f"(prompt {a['prompt_tps']:.0f} vs {t['prompt_tps']:.0f} tok/s, generation {a['gen_tps']:.0f} vs "
                     f"{t['gen_tps']:.0f}): set aside {', '.join(set_aside)}")
    return choice


def recorded_choice(lib: Path | None) -> dict | None:
    return json_file(lib / CHOICE_FILE if lib else None)

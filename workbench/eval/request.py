"""What a `wb eval` asks for, checked and turned into the pieces the runner takes: the lm-eval overrides, an ad-hoc
suite for --tasks, the run options. `wb eval` and `wb sweep`'s units share these."""

import math
from pathlib import Path

from workbench.errors import BadInput


def harness_overrides(num_fewshot, batch_size, chat_template, gen_kwargs, include_path) -> dict:
    """The lm-eval settings given on the command line; they override every harness entry of a suite."""
    out = {"num_fewshot": num_fewshot, "batch_size": batch_size, "apply_chat_template": chat_template,
           "gen_kwargs": (gen_kwargs if isinstance(gen_kwargs, dict) else parse_kwargs(gen_kwargs)) if gen_kwargs
           else None,
           "include_path": str(include_path.resolve()) if include_path else None}
    if include_path is not None and not include_path.is_dir():
        raise BadInput(f"--include-path {include_path}: no such directory (expected a folder of lm-eval task YAML)")
    return {k: v for k, v in out.items() if v is not None}


def parse_kwargs(text: str, option: str = "--gen-kwargs") -> dict:
    """'max_gen_toks=128,temperature=0' -> {'max_gen_toks': 128, 'temperature': 0}, as lm_eval's CLI reads it."""
    from workbench.system.user_files import parse_yaml

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise BadInput(f"{option}: '{part}' is not key=value")
        parsed = parse_yaml(value, option)
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise BadInput(f"{option}: {key.strip()}={value.strip()} is not a finite number")
        out[key.strip()] = parsed
    return out


def tasks_suite(tasks: str, overrides: dict):
    """An ad-hoc suite of one harness entry for `--tasks`: lm-eval's own defaults unless options say otherwise."""
    import hashlib

    from workbench.config import HarnessSpec, SuiteConfig
    from workbench.eval.suites import LoadedSuite

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise BadInput("--tasks: no task names given")
    spec = HarnessSpec(tasks=names, **overrides)
    config = SuiteConfig(name="lm-eval", description="lm-eval tasks from the command line", harness=[spec])
    sha = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
    return LoadedSuite(config=config, path=Path("<--tasks>"), sha=sha, items={})


def check_suite_choice(suite: str | None, tasks: str | None) -> None:
    if bool(suite) == bool(tasks):
        raise BadInput("give either --suite NAME or --tasks NAMES (lm-eval tasks)")


def load_request(suite: str | None, tasks: str | None, overrides: dict, *, evals_dir: str | None,
                 limit: int | None, no_harness: bool, data_dir: str | Path | None = None):
    """(the suite, its lm-eval entries with the overrides applied): a named suite or an ad-hoc --tasks one."""
    from workbench.eval.runner import harness_spec
    from workbench.eval.suites import load_suite

    check_suite_choice(suite, tasks)
    loaded = load_suite(suite, evals_dir=evals_dir, limit=limit, data_dir=data_dir) if suite else tasks_suite(tasks, overrides)
    specs = [] if no_harness else [harness_spec(spec, overrides, loaded.path) for spec in loaded.config.harness]
    return loaded, specs


def run_options(*, seed: int, dtype: str, device: str, backend: str, no_cache: bool,
                vllm_args: dict | None = None, endpoint_model: str | None = None,
                endpoint_key_env: str | None = None, endpoint_args: dict | None = None) -> dict:
    """The run settings every harness plan of one eval shares, and the runtime's (workbench.runtimes.base's
    RuntimeOptions are read from them)."""
    from workbench.runtimes.base import DTYPES

    if dtype not in DTYPES:
        raise BadInput(f"--dtype '{dtype}': expected one of {', '.join(DTYPES)}")
    if vllm_args and backend != "vllm":
        raise BadInput("--vllm-args: vLLM engine arguments need --backend vllm")
    return {"seed": seed, "dtype": dtype, "device": device, "backend": backend, "use_cache": not no_cache,
            "vllm_args": dict(vllm_args or {}), "endpoint_model": endpoint_model,
            "endpoint_key_env": endpoint_key_env, "endpoint_args": dict(endpoint_args or {})}

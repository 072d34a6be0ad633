"""General-capability regression evals through lm-evaluation-harness (never re-implemented here).

lm-eval's own task code builds prompts, runs requests and scores. wb adds: offline mirrors of the hub
datasets (workbench.eval.mirrors), narrow task lookup (indexing lm-eval's 14k task configs takes a while),
checks before any model loads, and results shaped for the store (metrics, per-sample records, settings).
"""

import contextlib
import difflib
import importlib.metadata
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.checkpoints.checkpoint import Checkpoint, require_base, weights_sha
from workbench.errors import BadInput, EnvironmentProblem
from workbench.eval.mirrors import use_mirrors
from workbench.runtimes import open_runtime
from workbench.runtimes.base import Runtime, RuntimeOptions
from workbench.store.files import read_json, write_json_atomic
from workbench.system.environment import versions
from workbench.system.extras import peft_without_gptqmodel, require
from workbench.system.home import home

PURPOSE = "Regression evals (lm-evaluation-harness)"

# Task families whose lm-eval folder is known: indexing that folder alone takes milliseconds.
KNOWN_FOLDERS = {"mmlu": "mmlu/default", "gsm8k": "gsm8k", "ifeval": "ifeval"}
# NLTK data lm-eval task folders need, which their module downloads when imported (IFEval's rule checks split
# sentences with punkt_tab): checked before the tasks are built, never downloaded (scripts/setup.sh installs it).
NLTK_DATA = {"ifeval": ("tokenizers/punkt_tab/english/",)}


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

    def output_types(self) -> dict[str, str]:
        """Each leaf task's output_type (generate_until, loglikelihood, multiple_choice, ...)."""
        return {t.config.task: t.config.output_type for t in self.leaf_tasks()}

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
    check_nltk_data(manager, names)
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
    runtime: Runtime | None = None,
) -> HarnessResult:
    """Run lm-eval tasks on a checkpoint, as `lm_eval run --model hf --seed <seed> ...` would.

    `runtime`: the checkpoint's runtime, already open (a suite's task generations and its lm-eval tasks share
    one); otherwise one is opened from backend, dtype, device and vllm_args, and closed at the end.
    Tasks and their datasets are built (and checked) before the model loads, so a wrong task name, data dir
    or mirror file fails in seconds. With `use_cache`, an unchanged rerun is served from the result cache
    without loading the model, and an interrupted run resumes from lm-eval's request cache (never for an
    endpoint: what a URL serves can change without the URL changing).
    """
    if limit is not None and not limit > 0:
        raise BadInput(f"limit must be positive, got {limit}")
    own = runtime is None
    if own:
        runtime = open_runtime(ckpt, RuntimeOptions(backend=backend, dtype=dtype, device=device,
                                                    vllm_args=dict(vllm_args or {})))
    try:
        return _run(runtime, tasks, data_dir=data_dir, include_path=include_path, limit=limit,
                    num_fewshot=num_fewshot, batch_size=batch_size, apply_chat_template=apply_chat_template,
                    seed=seed, gen_kwargs=gen_kwargs, log_samples=log_samples,
                    use_cache=use_cache and runtime.cacheable, prepared=prepared)
    finally:
        if own:
            runtime.close()


def _run(runtime: Runtime, tasks, *, data_dir, include_path, limit, num_fewshot, batch_size, apply_chat_template,
         seed, gen_kwargs, log_samples, use_cache, prepared) -> HarnessResult:
    ckpt, chat = runtime.checkpoint, bool(apply_chat_template)
    model_args = runtime.lm_eval_args(chat)
    if prepared is None:
        prepared = prepare_tasks(tasks, data_dir=data_dir, include_path=include_path, metadata=dict(model_args))
    device = runtime.device()
    settings = {
        "num_fewshot": num_fewshot, "limit": limit, "batch_size": batch_size,
        "apply_chat_template": chat, "fewshot_as_multiturn": chat,
        "chat_template_sha256": runtime.chat_template_sha() if chat else None, "seed": seed,
        "dtype": model_args.get("dtype"), "device": device, "gen_kwargs": gen_kwargs or None,
        "model": runtime.lm_eval_backend(chat), "model_args": model_args, "checkpoint": ckpt.to_dict(),
        "versions": versions(["lm_eval", "datasets", *runtime.versions()]),
    }
    # a reasoning model's generations are scored on their final answer (lm-eval issue 3161): see final_answers
    chat_format = runtime.chat_format() if chat else None
    if chat_format is not None and chat_format.reasoning_markers():
        settings["reasoning"] = chat_format.reasoning_markers()
    from workbench.eval import harness_cache

    if use_cache:
        vllm_args = runtime.options.vllm_args if runtime.key == "vllm" else None
        model_key = harness_cache.fingerprint({
            "weights": _weights_key(ckpt), "model": settings["model"], "dtype": settings["dtype"], "device": device,
            "batch_size": batch_size, "versions": settings["versions"],
            **({"reasoning": settings["reasoning"]} if "reasoning" in settings else {}),  # answers are cached stripped
            **({"vllm_args": vllm_args} if vllm_args else {})})  # engine arguments such as max_model_len change scores
        result_key = harness_cache.fingerprint({
            "model": model_key,
            "settings": {k: v for k, v in settings.items() if k not in ("checkpoint", "model_args")},
            "log_samples": log_samples, "tasks": prepared.fingerprint()})
        hit = harness_cache.load_result(result_key)
        if hit is not None:
            result = HarnessResult(**hit)
            # not in the key, so the computing run's: this run's checkpoint and paths are recorded instead
            result.settings.update(checkpoint=settings["checkpoint"], model_args=settings["model_args"])
            result.cache = {"result": "hit", "key": result_key, "requests_cached": 0, "requests_computed": 0}
            return result

    evaluator = require("lm_eval.evaluator", PURPOSE, "eval")
    utils = require("lm_eval.utils", PURPOSE, "eval")
    git_hash_without_git(evaluator)
    # lm-eval puts an adapter on its base with PEFT itself: GPTQModel's banner unless it is a GPTQ/AWQ checkpoint
    quiet_peft = peft_without_gptqmodel() if ckpt.format not in ("gptq", "awq") else contextlib.nullcontext()
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet_peft)
        counts = stack.enter_context(harness_cache.counting_requests())  # what CachingLM reports (use_cache only)
        lm = runtime.lm_eval_model(batch_size=batch_size, device=device, chat=chat)
        stripped = stack.enter_context(final_answers(lm, chat_format))
        results = evaluator.simple_evaluate(
            model=lm, model_args=dict(model_args), tasks=_flatten(prepared.built), task_manager=prepared.manager,
            num_fewshot=num_fewshot, batch_size=batch_size, device=device, limit=limit,
            use_cache=harness_cache.requests_db(model_key) if use_cache else None,
            log_samples=log_samples, apply_chat_template=apply_chat_template,
            fewshot_as_multiturn=chat,  # the lm_eval CLI's default
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
            task: [sample_record(s, output_types.get(task), stripped) for s in rows]
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


@contextlib.contextmanager
def final_answers(lm, chat_format):
    """While active, lm-eval's generate_until on `lm` (any runtime's lm-eval model) returns each generation's final
    answer, its thinking stripped by the ChatFormat, so lm-eval's filters and metrics (IFEval's rule checks,
    GSM8K's answer match) see the answer only; lm-eval 0.4.13's own think_end_token exists for its HF and vLLM
    models only and keeps a turn whose thinking never closes. Yields prompt -> characters stripped, filled as
    requests are answered; None where the checkpoint does not reason (or no chat template is applied).

    The request cache holds answers, never raw generations: lm-eval's cache hook is held back while the model
    runs and given the stripped answers.
    """
    if chat_format is None or not chat_format.reasoning_markers():
        yield None
        return
    cache_hook = require("lm_eval.api.model", PURPOSE, "eval").CacheHook
    generate = lm.generate_until
    stripped: dict[str, int] = {}

    def generate_until(requests, *args, **kwargs):
        hook, lm.cache_hook = lm.cache_hook, cache_hook(None)
        try:
            texts = generate(requests, *args, **kwargs)
        finally:
            lm.cache_hook = hook
        answers = []
        for request, text in zip(requests, texts, strict=True):
            answer, chars = chat_format.strip_reasoning(text)
            stripped[request.args[0]] = chars
            hook.add_partial("generate_until", request.args, answer)
            answers.append(answer)
        return answers

    lm.generate_until = generate_until
    try:
        yield stripped
    finally:
        del lm.generate_until  # an engine's model (vLLM) outlives the run


def _weights_key(ckpt: Checkpoint) -> dict:
    key = {"sha": ckpt.sha or weights_sha(ckpt.path), **({"hub_commit": ckpt.hub["commit"]} if ckpt.hub else {})}
    if ckpt.kind == "adapter":
        base = require_base(ckpt)
        key["base"] = base.sha or weights_sha(base.path)
        if base.hub:
            key["base_hub_commit"] = base.hub["commit"]
    return key


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


def check_nltk_data(manager, names: list[str]) -> None:
    """Raise EnvironmentProblem when a task among `names` (or in their groups) lives in a folder of NLTK_DATA
    whose NLTK data is not installed: lm-eval would download it while building the task."""
    index, pending, seen, needed = manager.task_index, list(names), set(), {}
    while pending:
        name = pending.pop()
        if name in seen or name not in index:
            continue
        seen.add(name)
        entry = index[name]
        pending += _members(entry)
        folders = set(Path(entry.yaml_path).parts) if entry.yaml_path else set()
        for folder, resources in NLTK_DATA.items():
            if folder in folders:
                needed.update(dict.fromkeys(resources, name))
    if not needed:
        return
    nltk = require("nltk", f"{PURPOSE}: {', '.join(sorted(set(needed.values())))}", "eval")
    for resource, task in needed.items():
        try:
            nltk.data.find(resource)
        except LookupError:
            raise EnvironmentProblem(
                f"lm-eval task {task} needs NLTK data '{resource.rstrip('/')}', which is not installed in any of "
                f"NLTK's folders ({', '.join(map(str, nltk.data.path))}): run scripts/setup.sh, which installs it "
                "into the virtual environment from a package (wb never downloads it at run time)") from None


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


def git_hash_without_git(evaluator) -> None:
    """lm-eval records the git commit of the current folder by running `git describe`, whose "fatal: not a git
    repository" reaches wb's stderr outside a repository: its own reader of .git/HEAD (no git run) is used
    instead."""
    git_reader = require("lm_eval.loggers.utils", PURPOSE, "eval").get_commit_from_path
    evaluator.get_git_commit_hash = lambda: git_reader(os.getcwd())


def sample_record(s: dict, output_type: str | None, stripped: dict | None = None) -> dict:
    """A compact per-sample record from one lm-eval logged sample (one doc under one filter); `stripped`: prompt ->
    characters of thinking final_answers stripped from its generation."""
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
        if stripped is not None:
            rec["reasoning_stripped_chars"] = [stripped.get(c) for c in contexts] if len(contexts) > 1 \
                else stripped.get(rec["prompt"])
    else:
        rec.update(arguments=args, resps=resps, filtered_resps=s.get("filtered_resps"))
    rec["metrics"] = {m: s.get(m) for m in s.get("metrics", [])}
    rec.update({k: s[k] for k in ("doc_hash", "prompt_hash", "target_hash") if k in s})
    return rec

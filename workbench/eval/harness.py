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
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.eval.mirrors import use_mirrors
from workbench.extras import require
from workbench.home import home
from workbench.store.files import read_json, write_json_atomic

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

    def to_dict(self) -> dict:
        return asdict(self)


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
    device: str = "cpu",
    dtype: str = "float32",
    gen_kwargs: dict | None = None,
    log_samples: bool = True,
) -> HarnessResult:
    """Run lm-eval tasks on a checkpoint, as `lm_eval run --model hf --seed <seed> ...` would.

    Tasks and their datasets are built (and checked) before the model loads, so a wrong task name, data dir
    or mirror file fails in seconds.
    """
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise BadInput("no lm-eval tasks given")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInput(f"data dir {data_dir}: no such directory")
    if include_path is not None and not Path(include_path).is_dir():
        raise BadInput(f"include path {include_path}: no such directory (expected a folder of lm-eval task YAML)")
    if limit is not None and not limit > 0:
        raise BadInput(f"limit must be positive, got {limit}")
    if dtype not in DTYPES:
        raise BadInput(f"dtype '{dtype}': expected one of {', '.join(DTYPES)}")
    model_args = hf_model_args(ckpt, dtype)

    evaluator = require("lm_eval.evaluator", PURPOSE, "eval")
    registry = require("lm_eval.api.registry", PURPOSE, "eval")
    manager = task_manager_for(tasks, Path(include_path) if include_path else None, metadata=dict(model_args))
    sources: dict = {}
    with use_mirrors(Path(data_dir) if data_dir else None, sources):
        built = [_build(manager, name) for name in tasks]

    lm = registry.get_model("hf").create_from_arg_obj(
        dict(model_args), {"batch_size": batch_size, "max_batch_size": None, "device": device}
    )
    results = evaluator.simple_evaluate(
        model=lm, model_args=dict(model_args), tasks=_flatten(built), task_manager=manager,
        num_fewshot=num_fewshot, batch_size=batch_size, device=device, limit=limit,
        log_samples=log_samples, apply_chat_template=apply_chat_template,
        fewshot_as_multiturn=bool(apply_chat_template),  # the lm_eval CLI's default
        gen_kwargs=dict(gen_kwargs) if gen_kwargs else None,
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
    )
    utils = require("lm_eval.utils", PURPOSE, "eval")
    samples = results.pop("samples", None) or {}
    raw = json.loads(json.dumps(results, default=utils.handle_non_serializable))
    output_types = {name: cfg.get("output_type") for name, cfg in raw.get("configs", {}).items()}
    return HarnessResult(
        metrics=metric_rows(raw),
        samples={
            task: [sample_record(s, output_types.get(task)) for s in rows]
            for task, rows in json.loads(json.dumps(samples, default=utils.handle_non_serializable)).items()
        },
        settings=_settings(raw, lm, model_args, ckpt, limit=limit, batch_size=batch_size, seed=seed,
                           apply_chat_template=apply_chat_template, device=device, dtype=dtype,
                           gen_kwargs=gen_kwargs),
        sources=sources,
        raw=raw,
    )


def check_harness(tasks: list[str], *, data_dir: Path | None = None, include_path: Path | None = None) -> dict:
    """Resolve the tasks and read their data (from the mirror where one is given) without loading a model.

    Raises BadInput / EnvironmentProblem for the cases run_harness would hit; returns the data sources.
    """
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInput(f"data dir {data_dir}: no such directory")
    if include_path is not None and not Path(include_path).is_dir():
        raise BadInput(f"include path {include_path}: no such directory (expected a folder of lm-eval task YAML)")
    manager = task_manager_for(list(dict.fromkeys(tasks)), Path(include_path) if include_path else None)
    sources: dict = {}
    with use_mirrors(Path(data_dir) if data_dir else None, sources):
        for name in dict.fromkeys(tasks):
            _build(manager, name)
    return sources


def hf_model_args(ckpt: Checkpoint, dtype: str) -> dict:
    """lm-eval `hf` model_args for a checkpoint: an HF folder, or base + PEFT adapter (unmerged)."""
    if ckpt.format in ("gguf", "exl2"):
        raise BadInput(f"checkpoint '{ckpt.path}': lm-eval's hf backend cannot load {ckpt.format} files")
    if ckpt.kind != "adapter":
        return {"pretrained": str(ckpt.path), "dtype": dtype}
    from workbench.models import base_of

    base = base_of(ckpt)
    if base.format in ("gguf", "exl2"):
        raise BadInput(f"adapter '{ckpt.path}': its base {base.path} is a {base.format} file, not an HF model")
    args = {"pretrained": str(base.path), "peft": str(ckpt.path), "dtype": dtype}
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


def _settings(raw: dict, lm, model_args: dict, ckpt: Checkpoint, *, limit, batch_size, seed,
              apply_chat_template, device, dtype, gen_kwargs) -> dict:
    template_sha = None
    if apply_chat_template:
        template = lm.chat_template(apply_chat_template) or ""
        template_sha = hashlib.sha256(template.encode()).hexdigest()
    return {
        "num_fewshot": raw.get("n-shot", {}), "limit": limit, "batch_size": batch_size,
        "apply_chat_template": bool(apply_chat_template), "fewshot_as_multiturn": bool(apply_chat_template),
        "chat_template_sha256": template_sha, "seed": seed, "dtype": dtype, "device": device,
        "gen_kwargs": gen_kwargs, "model": "hf", "model_args": model_args, "checkpoint": ckpt.to_dict(),
        "versions": _versions(ckpt),
    }


def _versions(ckpt: Checkpoint) -> dict:
    from workbench.environment import versions

    return versions(["lm_eval", "transformers", "torch", "datasets"] + (["peft"] if ckpt.kind == "adapter" else []))

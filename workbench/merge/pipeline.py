"""`workbench.merge` (what `wb merge` runs): an adapter into its base, several adapters of one base combined, or
whole models through mergekit; checked, and recorded in the store as a 'merge' run.

One adapter merges shard by shard when its base is sharded (workbench.merge.stream, the whole model never in
memory), else in memory (PEFT merge_and_unload, logits checked); a QLoRA adapter goes into the full-precision
base or the base as dequantized from its 4-bit weights (workbench.merge.qlora). Several adapters are combined by
PEFT's add_weighted_adapter (workbench.merge.adapters), models by mergekit (workbench.merge.mergekit)."""

import os
from dataclasses import dataclass
from pathlib import Path

from workbench.chat.named import template_sha256
from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.merge.probe import DEFAULT_TOLERANCE
from workbench.runtimes.hf import own_chat_template
from workbench.store.runs import Store
from workbench.system.console import info, library_stdout_to_stderr

WEIGHTED = "weighted adapters"
MERGEKIT = "mergekit"


@dataclass
class MergeResult:
    run_id: str
    checkpoint: Checkpoint  # the merged model at its published path, with its lineage
    method: str  # one adapter: "streaming" | "in-memory"; several: "weighted adapters"; models: "mergekit"
    check: dict | None = None  # merged vs unmerged logits (max_abs_logit_diff, argmax_agreement, ...), when measured
    streaming: dict | None = None  # the shard-by-shard merge: shards, tensors merged and replaced, ...
    combination: dict | None = None  # several adapters: method, weights, density, ...
    probe_perplexity: dict | None = None  # several adapters and mergekit: the merged model's and each parent's
    merged_models: int = 1  # adapters or models merged

    @property
    def merged(self) -> Path:
        return self.checkpoint.path

    @property
    def merge_note(self) -> dict:
        """A QLoRA adapter's merge: the target and what the merge cost against the adapter on its 4-bit base."""
        return self.checkpoint.parent.get("merge", {})

    def to_dict(self) -> dict:
        head = {"run_id": self.run_id, "merged": str(self.merged), "method": self.method}
        if self.method == WEIGHTED:
            return head | {"combination": self.combination, "merge_check": self.check,
                           "probe_perplexity": self.probe_perplexity}
        if self.method == MERGEKIT:
            parent = self.checkpoint.parent
            return head | {"merge_method": parent["merge_method"], "config_sha": parent["config_sha"],
                           "probe_perplexity": self.probe_perplexity}
        return head | ({"streaming": self.streaming} if self.streaming else {}) | (self.check or {}) | self.merge_note


def merge(adapter_or_adapters: str | os.PathLike | list | None, output: str | os.PathLike, *,
          base: str | None = None, streaming: bool | None = None, check: str = "auto",
          tolerance: float = DEFAULT_TOLERANCE, method: str | None = None, weights: list | None = None,
          density: float | None = None, svd_rank: int | None = None, seed: int = 0,
          mergekit: str | os.PathLike | None = None, into: str | None = None,
          store: Store | str | os.PathLike | None = None, command: str = "workbench.merge") -> MergeResult:
    """Merge into `output` (a new or empty folder) and check the result.

    One adapter (a folder, hub id or 'default'-based adapter): base: the base to merge into (checked to fit; default
    the one the adapter names); streaming: shard by shard (True), in memory (False), or by the base's layout (None);
    check: streaming merges' check, structure | logits | auto; tolerance: largest allowed |logit diff| merged vs
    base + adapter; into: a QLoRA adapter's target, 'fp' or 'dequantized' (its default).
    Several adapters (a list): method linear, cat, svd, ties, dare_linear, dare_ties or magnitude_prune; weights
    one per adapter (default 1 each); density for ties, dare_* and magnitude_prune; svd_rank for svd; seed.
    mergekit: a mergekit YAML config (adapter_or_adapters None): whole models merged, seed its random_seed."""
    from workbench.merge.stream import validate_check
    from workbench.system.output_paths import check_new_folder

    validate_check(check)
    if adapter_or_adapters is None:
        adapters = []
    elif isinstance(adapter_or_adapters, (str, os.PathLike)):
        adapters = [adapter_or_adapters]
    else:
        adapters = list(adapter_or_adapters)
    combining = {"--method": method, "--weights": weights, "--density": density, "--svd-rank": svd_rank}
    given = [name for name, value in combining.items() if value is not None]
    if mergekit is not None:
        extra = (["ADAPTER"] if adapters else []) + given + (["--streaming/--in-memory"] if streaming is not None
                                                             else [])
        if extra:
            raise BadInput(f"--mergekit takes its models from the config; drop {', '.join(extra)}")
    elif not adapters:
        raise BadInput("give an adapter folder, several adapters with --method, or --mergekit CONFIG.yaml")
    elif len(adapters) == 1 and given:
        raise BadInput(f"{', '.join(given)} combine several adapters; one adapter merges as it is")
    elif len(adapters) > 1 and (streaming or check != "auto"):
        raise BadInput("--streaming and --check apply to one adapter; several merge in memory, logits checked")
    if base and (mergekit is not None or len(adapters) > 1):
        raise BadInput("--base applies to one adapter")
    if into and (mergekit is not None or len(adapters) > 1):
        raise BadInput("--into applies to one adapter")
    out = Path(output)
    check_new_folder(out)
    if mergekit is not None:
        return _merge_mergekit(Path(mergekit), out, seed, store, command)
    if len(adapters) > 1:
        return _merge_several([str(a) for a in adapters], out, method, weights, density, svd_rank, seed, tolerance,
                              store, command)
    return _merge_one(str(adapters[0]), out, base, streaming, check, tolerance, into, store, command)


def _merge_one(adapter, out, base, streaming, check, tolerance, into, store, command) -> MergeResult:
    from workbench.checkpoints.lora_plan import plan_merge
    from workbench.checkpoints.resolve import resolve_checked
    from workbench.merge.lora import merge_adapter
    from workbench.merge.qlora import merge_target, plan_dequantize
    from workbench.merge.stream import choose_method, merge_streaming
    from workbench.system.environment import versions
    from workbench.system.progress import bars

    ckpt = resolve_checked(adapter, base)
    if ckpt.kind != "adapter":
        raise BadInput(f"'{adapter}' is not an adapter folder (no adapter_config.json)")
    target = merge_target(ckpt, into)
    plan = plan_merge(ckpt)  # the adapter must fit the base (shapes from the headers) before any weights load
    if target == "dequantized":
        plan_dequantize(plan)
    method, note = choose_method(plan, streaming)
    if note:
        info(note)
    st = Store.open(store)
    manifest = {"command": command, "checkpoint": ckpt.to_dict(), "versions": versions(), "method": method,
                "into": target}
    with st.open_run("merge", manifest) as run, library_stdout_to_stderr(), bars() as progress:
        if method == "streaming":
            merged, stream = merge_streaming(ckpt, out, plan=plan, check=check, tolerance=tolerance,
                                             progress=progress, into=target)
            report = stream.logits
        else:
            merged, report = merge_adapter(ckpt, out, tolerance=tolerance, into=target)
            stream = None
        run.manifest["output"] = merged.to_dict()
        run.manifest["chat_template_sha256"] = template_sha256(own_chat_template(merged))
        if report is not None:
            _check_metrics(run, report.__dict__)
        cost = merged.parent.get("merge", {}).get("vs_quantized_adapter")
        if cost:
            run.add_metric("merge_cost", "kl_vs_quantized_adapter", cost["kl"], n=cost["tokens"],
                           higher_is_better=False)
            run.add_metric("merge_cost", "top1_vs_quantized_adapter", cost["top1"], n=cost["tokens"])
    return MergeResult(run.run_id, merged, method, check=report.__dict__ if report else None,
                       streaming={k: v for k, v in stream.to_dict().items() if k != "logits"} if stream else None)


def _merge_several(refs, out, method, weights, density, svd_rank, seed, tolerance, store, command) -> MergeResult:
    from workbench.checkpoints.resolve import resolve_checked
    from workbench.merge.adapters import METHODS, check_adapters, combination, merge_adapters, parse_weights
    from workbench.system.environment import versions

    if method is None:
        raise BadInput(f"--method is needed to combine {len(refs)} adapters (one of {', '.join(METHODS)})")
    combo = combination(method, len(refs), parse_weights(weights), density, svd_rank, seed)
    adapters = [resolve_checked(ref) for ref in refs]
    check_adapters(adapters, combo)  # one base, shapes from the headers, ranks: before any weights load
    st = Store.open(store)
    with st.open_run("merge", {"command": command, "checkpoint": adapters[0].to_dict(),
                               "checkpoints": [a.to_dict() for a in adapters],
                               "versions": versions(), "method": WEIGHTED,
                               "combination": combo.to_dict()}) as run, library_stdout_to_stderr():
        merged, report = merge_adapters(adapters, out, combo, tolerance=tolerance)
        run.manifest["output"] = merged.to_dict()
        run.manifest["chat_template_sha256"] = template_sha256(own_chat_template(merged))
        _check_metrics(run, report["merge_check"])
        _perplexity_metrics(run, report)
    return MergeResult(run.run_id, merged, WEIGHTED, check=report["merge_check"], combination=combo.to_dict(),
                       probe_perplexity=_perplexities(report), merged_models=len(adapters))


def _merge_mergekit(config_path: Path, out: Path, seed: int, store, command) -> MergeResult:
    from workbench.system.environment import versions
    from workbench.system.extras import require

    require("mergekit", "Model-model merges", "merge")
    from workbench.merge.mergekit import MergekitConfig, check_models, merge_with_mergekit

    cfg = MergekitConfig(config_path)
    parents = check_models(cfg)  # every model there, one shape per tensor name: before any weights load
    st = Store.open(store)
    with st.open_run("merge", {"command": command, "checkpoint": parents[0].to_dict(),
                               "checkpoints": [p.to_dict() for p in parents],
                               "versions": versions(), "method": MERGEKIT,
                               "mergekit": {"config_path": str(cfg.path), "config_sha": cfg.sha,
                                            "merge_method": cfg.config.merge_method}}) as run, \
            library_stdout_to_stderr():
        merged, report = merge_with_mergekit(cfg, out, seed=seed, parents=parents)
        run.manifest["output"] = merged.to_dict()
        run.manifest["chat_template_sha256"] = template_sha256(own_chat_template(merged))
        _perplexity_metrics(run, report)
    return MergeResult(run.run_id, merged, MERGEKIT, probe_perplexity=_perplexities(report),
                       merged_models=len(parents))


def _check_metrics(run, check: dict) -> None:
    run.add_metric("merge_check", "max_abs_logit_diff", check["max_abs_logit_diff"], n=check["probe_tokens"],
                   higher_is_better=False)
    run.add_metric("merge_check", "argmax_agreement", check["argmax_agreement"], n=check["probe_tokens"])


def _perplexities(report: dict) -> dict:
    return {"merged": report["verified"]["probe_perplexity"], "probe_tokens": report["verified"]["probe_tokens"],
            "parents": report["parents"]}


def _perplexity_metrics(run, report: dict) -> None:
    n = report["verified"]["probe_tokens"]
    run.add_metric("probe_perplexity", "merged", report["verified"]["probe_perplexity"], n=n,
                   higher_is_better=False)
    for parent in report["parents"]:
        run.add_metric("probe_perplexity", f"parent:{parent['name']}", parent["probe_perplexity"],
                       higher_is_better=False, path=parent["path"], parent_kind=parent["kind"])


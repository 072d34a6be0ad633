"""`wb merge ADAPTER -o DIR`: merge a LoRA adapter into its base, verified.

A sharded base merges shard by shard (workbench.merge.stream, the whole model never in memory); a single-file
base, or an adapter the streaming merge cannot do, merges in memory (PEFT merge_and_unload, logits checked).
Several adapters of one base are combined first (`--method`, workbench.merge.adapters); whole models merge
through mergekit (`--mergekit CONFIG.yaml`, workbench.merge.mergekit)."""

from pathlib import Path
from typing import List, Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, store_for
from workbench.cli.output import emit_json
from workbench.system.console import info, library_stdout_to_stderr


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)


def merge(
    adapters: Optional[List[str]] = typer.Argument(
        None, help="PEFT adapter folder; several (of one base) are combined with --method."),
    out: Path = typer.Option(..., "-o", "--out", help="Folder for the merged model (must be empty or absent)."),
    base: Optional[str] = typer.Option(
        None, "--base", help="The base to merge into (checked to fit; default: the one the adapter names)."),
    streaming: Optional[bool] = typer.Option(
        None, "--streaming/--in-memory",
        help="One adapter: merge shard by shard (default when the base is sharded) or the whole model in memory."),
    check: str = typer.Option(
        "auto", "--check", help="Streaming merges: structure (every tensor there, shaped, finite), logits (also "
                                "merged vs base + adapter logits, loads the model), auto (logits when the model is "
                                "float32 and at most 1 GiB)."),
    tolerance: float = typer.Option(1e-3, min=0.0, help="Largest allowed |logit diff| merged vs base + adapter."),
    method: Optional[str] = typer.Option(
        None, "--method", help="Several adapters: linear, cat, svd, ties, dare_linear, dare_ties or magnitude_prune "
                               "(PEFT add_weighted_adapter)."),
    weights: Optional[List[str]] = typer.Option(
        None, "--weights", help="One weight per adapter, comma-separated or repeated (default 1 each)."),
    density: Optional[float] = typer.Option(
        None, "--density", help="ties, dare_*, magnitude_prune: the fraction of each delta kept, in (0, 1]."),
    svd_rank: Optional[int] = typer.Option(None, "--svd-rank", help="svd: the combined adapter's rank."),
    seed: int = typer.Option(0, "--seed", help="Random seed (dare_* drops at random; mergekit's random_seed)."),
    mergekit: Optional[Path] = typer.Option(
        None, "--mergekit", help="Merge whole models with mergekit: its YAML config, as is."),
    into: Optional[str] = typer.Option(
        None, "--into", help="An adapter trained on a 4-bit base (QLoRA): merge into the full-precision base (fp) or "
                             "into the base as dequantized from the training's 4-bit weights (dequantized, the "
                             "default for such adapters: what the adapter saw in training). See docs/merge.md."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Merge an adapter into its base (or several adapters, or models with mergekit) and check the result."""
    from workbench.errors import BadInput
    from workbench.merge.stream import validate_check
    from workbench.system.output_paths import check_new_folder

    validate_check(check)
    adapters = adapters or []
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
    check_new_folder(out)
    if mergekit is not None:
        _merge_mergekit(mergekit, out, seed, store, json_out)
    elif len(adapters) > 1:
        _merge_several(adapters, out, method, weights, density, svd_rank, seed, tolerance, store, json_out)
    else:
        _merge_one(adapters[0], out, base, streaming, check, tolerance, into, store, json_out)


def _merge_one(adapter, out, base, streaming, check, tolerance, into, store, json_out):
    from workbench.checkpoints.lora_plan import plan_merge
    from workbench.checkpoints.resolve import resolve_checked
    from workbench.errors import BadInput
    from workbench.merge.lora import merge_adapter
    from workbench.merge.qlora import describe_merge, merge_target, plan_dequantize
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
    st = store_for(store)
    with st.open_run("merge", {"command": command_line(), "checkpoint": ckpt.to_dict(), "versions": versions(),
                               "method": method, "into": target}) as run, library_stdout_to_stderr(), bars() as progress:
        if method == "streaming":
            merged, stream = merge_streaming(ckpt, out, plan=plan, check=check, tolerance=tolerance,
                                             progress=progress, into=target)
            report = stream.logits
        else:
            merged, report = merge_adapter(ckpt, out, tolerance=tolerance, into=target)
            stream = None
        run.manifest["output"] = merged.to_dict()
        if report is not None:
            _check_metrics(run, report.__dict__)
        cost = merged.parent.get("merge", {}).get("vs_quantized_adapter")
        if cost:
            run.add_metric("merge_cost", "kl_vs_quantized_adapter", cost["kl"], n=cost["tokens"],
                           higher_is_better=False)
            run.add_metric("merge_cost", "top1_vs_quantized_adapter", cost["top1"], n=cost["tokens"])
    summary = {"run_id": run.run_id, "merged": str(merged.path), "method": method,
               **({"streaming": {k: v for k, v in stream.to_dict().items() if k != "logits"}} if stream else {}),
               **(report.__dict__ if report else {}), **merged.parent.get("merge", {})}
    if json_out:
        emit_json(summary)
        return
    done = f"merged into {merged.path} ({method}"
    if stream:
        done += (f", {stream.shards} shards, {stream.tensors_merged} tensors merged, "
                 f"{stream.tensors_replaced} replaced; every tensor present, shaped and finite")
    info(done + ")" + (f": {_check_line(report.__dict__)}" if report else ""))
    if "merge" in merged.parent:
        info(describe_merge(merged.parent))


def _merge_several(refs, out, method, weights, density, svd_rank, seed, tolerance, store, json_out):
    from workbench.checkpoints.resolve import resolve_checked
    from workbench.errors import BadInput
    from workbench.merge.adapters import METHODS, check_adapters, combination, merge_adapters, parse_weights
    from workbench.system.environment import versions

    if method is None:
        raise BadInput(f"--method is needed to combine {len(refs)} adapters (one of {', '.join(METHODS)})")
    combo = combination(method, len(refs), parse_weights(weights), density, svd_rank, seed)
    adapters = [resolve_checked(ref) for ref in refs]
    check_adapters(adapters, combo)  # one base, shapes from the headers, ranks: before any weights load
    st = store_for(store)
    with st.open_run("merge", {"command": command_line(), "checkpoint": adapters[0].to_dict(),
                               "checkpoints": [a.to_dict() for a in adapters],
                               "versions": versions(), "method": "weighted adapters",
                               "combination": combo.to_dict()}) as run, library_stdout_to_stderr():
        merged, report = merge_adapters(adapters, out, combo, tolerance=tolerance)
        run.manifest["output"] = merged.to_dict()
        _check_metrics(run, report["merge_check"])
        _perplexity_metrics(run, report)
    summary = {"run_id": run.run_id, "merged": str(merged.path), "method": "weighted adapters",
               "combination": combo.to_dict(), "merge_check": report["merge_check"],
               "probe_perplexity": _perplexities(report)}
    if json_out:
        emit_json(summary)
        return
    info(f"merged {len(adapters)} adapters into {merged.path} ({combo.method}, weights "
         f"{', '.join(f'{w:g}' for w in combo.weights)}"
         + (f", density {combo.density:g}" if combo.density is not None else "") + "): "
         + _check_line(report["merge_check"]))
    info(_perplexity_line(report))


def _merge_mergekit(config_path, out, seed, store, json_out):
    from workbench.system.environment import versions
    from workbench.system.extras import require

    require("mergekit", "Model-model merges", "merge")
    from workbench.merge.mergekit import MergekitConfig, check_models, merge_with_mergekit

    cfg = MergekitConfig(config_path)
    parents = check_models(cfg)  # every model there, one shape per tensor name: before any weights load
    st = store_for(store)
    with st.open_run("merge", {"command": command_line(), "checkpoint": parents[0].to_dict(),
                               "checkpoints": [p.to_dict() for p in parents],
                               "versions": versions(), "method": "mergekit",
                               "mergekit": {"config_path": str(cfg.path), "config_sha": cfg.sha,
                                            "merge_method": cfg.config.merge_method}}) as run, \
            library_stdout_to_stderr():
        merged, report = merge_with_mergekit(cfg, out, seed=seed, parents=parents)
        run.manifest["output"] = merged.to_dict()
        _perplexity_metrics(run, report)
    summary = {"run_id": run.run_id, "merged": str(merged.path), "method": "mergekit",
               "merge_method": cfg.config.merge_method, "config_sha": cfg.sha,
               "probe_perplexity": _perplexities(report)}
    if json_out:
        emit_json(summary)
        return
    info(f"merged {len(parents)} models into {merged.path} (mergekit {cfg.config.merge_method}); it loads and its "
         "probe logits are finite")
    info(_perplexity_line(report))


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


def _check_line(check: dict) -> str:
    return (f"max |logit diff| {check['max_abs_logit_diff']:.3g} (mean {check['mean_abs_logit_diff']:.3g}, argmax "
            f"agreement {check['argmax_agreement']:.4f} over {check['probe_tokens']} probe tokens, tolerance "
            f"{check['tolerance']:g})")


def _perplexity_line(report: dict) -> str:
    parents = "; ".join(f"{p['name']} ({p['kind']}) {p['probe_perplexity']:.3f}" for p in report["parents"])
    return f"probe perplexity: merged {report['verified']['probe_perplexity']:.3f}; parents: {parents}"

"""`wb merge ADAPTER -o DIR`: merge a LoRA adapter into its base, verified (workbench.merge.pipeline); several
adapters of one base with `--method`, whole models with `--mergekit CONFIG.yaml`."""

from pathlib import Path
from typing import List, Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, finite
from workbench.cli.output import emit_json
from workbench.system.console import info


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
    tolerance: float = typer.Option(1e-3, min=0.0, callback=finite,
                                   help="Largest allowed |logit diff| merged vs base + adapter."),
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
    from workbench.merge.pipeline import MERGEKIT, WEIGHTED
    from workbench.merge.pipeline import merge as merge_models

    result = merge_models(adapters, out, base=base, streaming=streaming, check=check, tolerance=tolerance,
                          method=method, weights=weights, density=density, svd_rank=svd_rank, seed=seed,
                          mergekit=mergekit, into=into, store=store, command=command_line())
    if json_out:
        emit_json(result.to_dict())
    elif result.method == MERGEKIT:
        info(f"merged {result.merged_models} models into {result.merged} (mergekit "
             f"{result.checkpoint.parent['merge_method']}); it loads and its probe logits are finite")
        info(_perplexity_line(result.probe_perplexity))
    elif result.method == WEIGHTED:
        combo = result.combination
        info(f"merged {result.merged_models} adapters into {result.merged} ({combo['method']}, weights "
             f"{', '.join(f'{w:g}' for w in combo['weights'])}"
             + (f", density {combo['density']:g}" if combo.get("density") is not None else "") + "): "
             + _check_line(result.check))
        info(_perplexity_line(result.probe_perplexity))
    else:
        _print_one(result)


def _print_one(result) -> None:
    from workbench.merge.qlora import describe_merge

    done = f"merged into {result.merged} ({result.method}"
    stream = result.streaming
    if stream:
        done += (f", {stream['shards']} shards, {stream['tensors_merged']} tensors merged, "
                 f"{stream['tensors_replaced']} replaced; every tensor present, shaped and finite")
    info(done + ")" + (f": {_check_line(result.check)}" if result.check else ""))
    if "merge" in result.checkpoint.parent:
        info(describe_merge(result.checkpoint.parent))


def _check_line(check: dict) -> str:
    return (f"max |logit diff| {check['max_abs_logit_diff']:.3g} (mean {check['mean_abs_logit_diff']:.3g}, argmax "
            f"agreement {check['argmax_agreement']:.4f} over {check['probe_tokens']} probe tokens, tolerance "
            f"{check['tolerance']:g})")


def _perplexity_line(perplexity: dict) -> str:
    parents = "; ".join(f"{p['name']} ({p['kind']}) {p['probe_perplexity']:.3f}" for p in perplexity["parents"])
    return f"probe perplexity: merged {perplexity['merged']:.3f}; parents: {parents}"

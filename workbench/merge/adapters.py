"""Several LoRA adapters of one base, combined by PEFT's add_weighted_adapter and merged into that base.

Everything that can be checked without weights is checked first: every adapter fits its base (merge_plan reads
the shapes from the safetensors headers), all bases are one model, the method's options make sense (weights
finite and one per adapter, density in (0, 1] where the method prunes, equal ranks where PEFT sums the factors).
Then the base loads once in float32 with every adapter; each parent's probe perplexity is measured on it, the
combination is added, and its merge into the weights is checked as a single adapter's is (merged logits against
base + combined adapter). The written folder is loaded back and probed (workbench.merge.verify)."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.errors import BadInput
from workbench.store.files import staged_folder
from workbench.system.extras import peft_without_gptqmodel
from workbench.system.failures import disk_full_as

HOW = "peft add_weighted_adapter + merge_and_unload"
# method -> PEFT combination_type; which take a density; which sum the LoRA factors (so need one rank)
METHODS = {"linear": "linear", "cat": "cat", "svd": "svd", "ties": "ties", "dare_linear": "dare_linear",
           "dare_ties": "dare_ties", "magnitude_prune": "magnitude_prune"}
DENSITY_METHODS = ("ties", "dare_linear", "dare_ties", "magnitude_prune")
SAME_RANK_METHODS = ("linear",) + DENSITY_METHODS
MERGED_ADAPTER = "wb_merged"


@dataclass(frozen=True)
class Combination:
    method: str
    weights: tuple[float, ...]
    density: float | None = None
    svd_rank: int | None = None
    seed: int = 0  # dare_* drop at random

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None} | {"weights": list(self.weights)}


def parse_weights(values: list[str] | None) -> list[float] | None:
    """--weights, repeated or comma-separated; each a finite number."""
    if not values:
        return None
    out = []
    for item in (part.strip() for value in values for part in str(value).split(",")):
        try:
            weight = float(item)
        except ValueError:
            raise BadInput(f"--weights: '{item}' is not a number") from None
        if not math.isfinite(weight):
            raise BadInput(f"--weights: '{item}' is not a finite number")
        out.append(weight)
    return out


def combination(method: str, n_adapters: int, weights: list[float] | None, density: float | None,
                svd_rank: int | None, seed: int = 0) -> Combination:
    """The options checked against the method and the number of adapters."""
    if method not in METHODS:
        raise BadInput(f"--method must be one of {', '.join(METHODS)}, not '{method}'")
    weights = [1.0] * n_adapters if weights is None else weights
    if len(weights) != n_adapters:
        raise BadInput(f"--weights: {len(weights)} weight(s) for {n_adapters} adapters; give one per adapter")
    if any(not math.isfinite(w) for w in weights):
        raise BadInput("--weights: every weight must be a finite number")
    if method in DENSITY_METHODS:
        if density is None:
            raise BadInput(f"--density is required with --method {method} (the fraction of each delta kept, in (0, 1])")
        if not (math.isfinite(density) and 0 < density <= 1):
            raise BadInput(f"--density must be in (0, 1], not {density:g}")
    elif density is not None:
        raise BadInput(f"--density applies to --method {', '.join(DENSITY_METHODS)}, not {method}")
    if svd_rank is not None and (method != "svd" or svd_rank < 1):
        raise BadInput("--svd-rank applies to --method svd only" if method != "svd"
                       else f"--svd-rank must be at least 1, not {svd_rank}")
    return Combination(method, tuple(weights), density, svd_rank, seed)


def check_adapters(adapters: list[Checkpoint], combo: Combination) -> Checkpoint:
    """Every adapter a LoRA that fits one and the same base, from configs and headers alone; returns that base."""
    from workbench.checkpoints.lora_plan import plan_merge

    for ckpt in adapters:
        if ckpt.kind != "adapter":
            raise BadInput(f"'{ckpt.path}' is not an adapter folder (no adapter_config.json)")
    plans = [plan_merge(a) for a in adapters]  # each adapter's shapes against its base's headers
    first = plans[0].base
    for plan in plans[1:]:
        if not _same_model(first, plan.base):
            raise BadInput(f"adapter '{plan.adapter.path}' is for base '{plan.base.path}', but adapter "
                           f"'{adapters[0].path}' is for base '{first.path}'; combine adapters of one base")
    configs = [_adapter_config(a) for a in adapters]
    for ckpt, config in zip(adapters, configs):
        if config.get("peft_type", "LORA") != "LORA":
            raise BadInput(f"adapter '{ckpt.path}' is a {config.get('peft_type')} adapter; add_weighted_adapter "
                           "combines LoRA adapters only")
        if config.get("use_dora"):  # add_weighted_adapter combines the A/B factors; DoRA's magnitudes are not
            raise BadInput(f"adapter '{ckpt.path}' uses DoRA; several adapters combine plain LoRA only")
    if combo.method in SAME_RANK_METHODS:
        ranks = [max([config.get("r", 8), *(config.get("rank_pattern") or {}).values()]) for config in configs]
        if len(set(ranks)) > 1:
            listing = ", ".join(f"'{a.path}' r={r}" for a, r in zip(adapters, ranks))
            raise BadInput(f"--method {combo.method} needs adapters of one rank ({listing}); use cat or svd")
    if len({type(config.get("target_modules")) is str for config in configs}) > 1:
        raise BadInput("the adapters name target_modules differently (a regex string in one, a list in another); "
                       "PEFT cannot combine them")
    return first


def _same_model(a: Checkpoint, b: Checkpoint) -> bool:
    if Path(a.path).resolve() == Path(b.path).resolve():
        return True
    return _sha(a) == _sha(b)


def _sha(ckpt: Checkpoint) -> str:
    if not ckpt.sha:
        ckpt.sha = weights_sha(Path(ckpt.path))
    return ckpt.sha


def _adapter_config(ckpt: Checkpoint) -> dict:
    path = Path(ckpt.path) / "adapter_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def merge_adapters(adapters: list[Checkpoint], out_dir: Path, combo: Combination, *,
                   tolerance: float) -> tuple[Checkpoint, dict]:
    """Returns the merged checkpoint and its report: the merge check, and the probe perplexities of the merged
    model, the base, and base + each adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from workbench.merge.lora import trained_on
    from workbench.merge.probe import compare_logits, probe, probe_tokenizer
    from workbench.merge.verify import probe_perplexity, verify_folder
    from workbench.system.output_paths import check_new_folder

    check_new_folder(out_dir)
    base = check_adapters(adapters, combo)
    tokenizer = probe_tokenizer(adapters[0])
    model = AutoModelForCausalLM.from_pretrained(str(base.path), dtype=torch.float32)
    names = [f"a{i}" for i in range(len(adapters))]
    with peft_without_gptqmodel():
        model = PeftModel.from_pretrained(model, str(adapters[0].path), adapter_name=names[0])
        for name, ckpt in zip(names[1:], adapters[1:]):
            model.load_adapter(str(ckpt.path), adapter_name=name)
    model.eval()
    parents = []
    with model.disable_adapter():
        parents.append({"name": base.name, "path": str(base.path), "kind": "base",
                        "probe_perplexity": probe_perplexity(model, tokenizer, f"base '{base.path}'")[0]})
    for name, ckpt in zip(names, adapters):
        model.set_adapter(name)
        parents.append({"name": ckpt.name, "path": str(ckpt.path), "kind": "base + adapter",
                        "probe_perplexity": probe_perplexity(model, tokenizer, f"adapter '{ckpt.path}'")[0]})
    torch.manual_seed(combo.seed)
    try:
        model.add_weighted_adapter(names, list(combo.weights), MERGED_ADAPTER,
                                   combination_type=METHODS[combo.method], density=combo.density,
                                   svd_rank=combo.svd_rank)
    except ValueError as exc:  # PEFT's own refusals (modules_to_save in two adapters, ...)
        raise BadInput(f"PEFT cannot combine these adapters with --method {combo.method}: {exc}") from None
    model.set_adapter(MERGED_ADAPTER)
    for name in names:
        model.delete_adapter(name)
    model.eval()  # the combined adapter's modules are new, in training mode: their LoRA dropout would be on
    before, n_tokens, _ = probe(model, tokenizer, torch)
    merged = model.merge_and_unload()
    after, _, _ = probe(merged, tokenizer, torch)
    check = compare_logits(adapters[0], before, after, n_tokens, tolerance)
    with staged_folder(out_dir) as build:
        with disk_full_as(out_dir):
            merged.save_pretrained(str(build))
            tokenizer.save_pretrained(str(build))
        del merged, model
        verified = verify_folder(build, adapters[0])
        ckpt = Checkpoint(
            path=build, name=f"{adapters[0].name}-{combo.method}-merged", kind="merged", format="hf",
            base=adapters[0].base, sha=weights_sha(build),
            parent={"how": HOW, **combo.to_dict(),
                    "base": {"name": base.name, "path": str(base.path), "sha": _sha(base)},
                    "adapters": [{"name": a.name, "path": str(a.path), "sha": _sha(a), "weight": w,
                                  **trained_on(a)} for a, w in zip(adapters, combo.weights)],
                    "merge_check": check.__dict__, "verified": verified, "parents_probe_perplexity": parents},
        )
        ckpt.save_meta()
    ckpt.path = out_dir.resolve()
    return ckpt, {"merge_check": check.__dict__, "verified": verified, "parents": parents}

"""Merging an adapter trained on a 4-bit base (QLoRA): which base weights it goes into, and what that costs.

Two targets (`wb merge --into`):
- `fp`: the full-precision base, W + BA;
- `dequantized`: dequant(quant(W)) + BA for every Linear that bitsandbytes replaced in training (transformers'
  own rule: every nn.Linear/Conv1D but the output embeddings, tied weights, the last module and
  llm_int8_skip_modules), which is the base the adapter saw in training. Other weights stay as they are.

The cost of either is measured against the adapter on its quantized base (bitsandbytes-loaded, unmerged, as
trained): mean per-token KL(reference || merged) and top-1 agreement.
"""

import gc
from dataclasses import dataclass

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.checkpoints.quantization import is_4bit, params4bit_settings, quantization_of
from workbench.errors import BadInput
from workbench.system.extras import require

TARGETS = ("fp", "dequantized")
# Measured (bench/bench_qlora_merge.py, docs/merge.md; contacts-qlora on the default model): against the adapter on
# its NF4 base, dequantized is KL 1.9e-11, top-1 1.0, contacts unchanged; fp is KL 0.51, top-1 0.76, contacts +1/80.
DEFAULT_TARGET = "dequantized"


def merge_target(adapter: Checkpoint, into: str | None) -> str:
    """The base weights a merge goes into: `into`, or the default for this adapter; a BadInput for a target it
    cannot have."""
    if into is not None and into not in TARGETS:
        raise BadInput(f"--into must be one of {', '.join(TARGETS)}, not '{into}'")
    record = quantization_of(adapter)
    if into == "dequantized" and not is_4bit(record):
        trained = f"an {record['type']} base" if record else "a full-precision base"
        raise BadInput(f"--into dequantized: adapter '{adapter.path}' was trained on {trained} (lineage), not a "
                       "4-bit (nf4/fp4) one; use --into fp")
    if into is None:
        return DEFAULT_TARGET if is_4bit(record) else "fp"
    return into


def quantized_linears(model, settings: dict) -> dict[str, bool]:
    """{module name: transposed} of the modules transformers' bitsandbytes integration turns into Linear4bit for
    this model (Conv1D weights are quantized transposed); `model` may be on the meta device."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = HfQuantizer.get_modules_to_not_convert(model, settings["skip_modules"], model._keep_in_fp32_modules)
    return {name: isinstance(module, Conv1D) for name, module in model.named_modules()
            if (type(module) is nn.Linear or isinstance(module, Conv1D)) and should_convert_module(name, skip)}


def round_trip(weight, settings: dict, transposed: bool = False):
    """dequantize_4bit(quantize_4bit(weight)) as Params4bit quantizes it when transformers loads the base (the
    weight in the load dtype, contiguous, bitsandbytes' settings), back in the weight's dtype."""
    import bitsandbytes.functional as F

    w = (weight.T if transposed else weight).to(settings["compute_dtype"]).contiguous()
    packed, state = F.quantize_4bit(w, blocksize=settings["blocksize"], compress_statistics=settings[
        "compress_statistics"], quant_type=settings["quant_type"], quant_storage=settings["quant_storage"])
    out = F.dequantize_4bit(packed, state)
    return (out.T if transposed else out).to(weight.dtype)


def dequantize_base(model, record: dict) -> int:
    """In place: every weight bitsandbytes would quantize under `record` becomes its round trip. Returns how many."""
    import torch

    settings = params4bit_settings(record)
    linears = quantized_linears(model, settings)
    with torch.no_grad():
        for name, transposed in linears.items():
            weight = model.get_submodule(name).weight
            weight.data = round_trip(weight.data, settings, transposed)
    return len(linears)


def load_unmerged(adapter: Checkpoint, target: str):
    """Base + adapter (unmerged, float32), the base being the merge target's weights."""
    from workbench.runtimes.hf import load_model

    record = quantization_of(adapter)
    prepare = (lambda model: dequantize_base(model, record)) if target == "dequantized" else None
    return load_model(adapter, as_trained=False, prepare_base=prepare)


@dataclass
class DistributionCost:
    """A merged model's next-token distributions against the adapter on its quantized base."""
    kl: float  # mean per token of KL(reference || merged), nats
    top1: float  # fraction of tokens whose argmax agrees
    tokens: int

    def add(self, reference_logits, logits) -> "DistributionCost":
        """This cost with one more batch of (tokens, vocab) logits folded in (token-weighted means)."""
        import torch

        ref = torch.log_softmax(reference_logits.double(), -1)  # float32 rounding alone gives KLs of 1e-10
        got = torch.log_softmax(logits.double(), -1)
        kl = (ref.exp() * (ref - got)).sum(-1)
        top1 = (ref.argmax(-1) == got.argmax(-1)).float()
        n = self.tokens + len(kl)
        return DistributionCost(kl=(self.kl * self.tokens + float(kl.sum())) / n,
                                top1=(self.top1 * self.tokens + float(top1.sum())) / n, tokens=n)


def distribution_cost(reference_logits, logits) -> DistributionCost:
    return DistributionCost(0.0, 0.0, 0).add(reference_logits, logits)


def quantized_reference(adapter: Checkpoint, tokenizer):
    """The probe logits of the adapter on its quantized base, as trained; None for an adapter trained on a
    full-precision base. The model is freed before this returns (the merge loads another)."""
    if quantization_of(adapter) is None:
        return None
    import torch

    from workbench.merge.probe import probe
    from workbench.runtimes.hf import load_model

    model = load_model(adapter)
    logits, _, _ = probe(model, tokenizer, torch)
    del model
    gc.collect()
    return logits


def merge_note(adapter: Checkpoint, target: str, reference, merged_logits) -> dict:
    """The lineage note of the merge target ({} for an adapter trained on a full-precision base)."""
    if reference is None:
        return {}
    cost = distribution_cost(reference, merged_logits)
    return {"merge": {"into": target, "vs_quantized_adapter": cost.__dict__}}


def plan_dequantize(plan) -> None:
    """A streaming merge plan (workbench.checkpoints.lora_plan.MergePlan) for `--into dequantized`: which base tensors round
    trip, found on the base model built on the meta device (no weights). Names the base's files do not hold under
    the module's name, or not as floating point, make the plan unsupported (the in-memory merge does them)."""
    torch = require("torch", "Merging", "train")
    transformers = require("transformers", "Merging", "eval")

    settings = params4bit_settings(quantization_of(plan.adapter))
    config = transformers.AutoConfig.from_pretrained(str(plan.base.path))
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    names = {f"{name}.weight": transposed for name, transposed in quantized_linears(model, settings).items()}
    entries = {n: e for s in plan.shards for n, e in s.entries.items()}
    missing = sorted(n for n in names if n not in entries)
    if missing:
        plan.unsupported.append(f"--into dequantized: the base's files have no tensor '{missing[0]}' for its module")
    plan.unsupported += [f"--into dequantized: the base's '{n}' is {entries[n].dtype}, not floating point"
                         for n in sorted(names) if n in entries and not entries[n].is_float]
    plan.dequantize = {n: t for n, t in names.items() if n not in plan.replacements}
    plan.quant_settings = settings


def describe_merge(parent: dict) -> str:
    """One line for `wb merge`: a QLoRA adapter's merge target and its measured cost."""
    note, quantization = parent["merge"], parent["trained_on_quantization"]["type"]
    line = f"trained on a {quantization} base; merged into {note['into']}"
    cost = note.get("vs_quantized_adapter")
    if cost:
        line += (f": vs the adapter on its {quantization} base, KL {cost['kl']:.3g} nats/token, top-1 agreement "
                 f"{cost['top1']:.4f} over {cost['tokens']} probe tokens")
    return line

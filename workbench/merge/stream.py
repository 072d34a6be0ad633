"""A LoRA merge shard by shard over safetensors: the whole model is never in memory.

Each base shard is rewritten tensor by tensor into the staging folder: a tensor the adapter does not touch is
copied byte for byte (never held), a targeted one is read, merged as PEFT's merge_and_unload merges it and
written. The header is the base's, verbatim: a merge keeps every name, dtype and shape, so every offset too. What
stays in memory is the adapter (in float32, as PEFT holds it) and one base tensor at a time.

The result is checked without loading the model: every tensor the base has is there with its dtype and shape and
is finite, the config loads. The logits check of the in-memory merge (merged against base + adapter) runs too when
asked, or by default when the model is small and in float32 (a half-precision output differs from the float32
base + adapter by the rounding of every merged weight, which no fixed tolerance fits).
"""

import gc
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from workbench.checkpoints.checkpoint import META_NAME, TOKENIZER_FILES, WEIGHT_SUFFIXES, Checkpoint, weights_sha
from workbench.checkpoints.lora_plan import INDEX_NAME, MergePlan, plan_merge
from workbench.checkpoints.safetensors_files import all_finite, copy_bytes, read_header, read_tensor, write_tensor
from workbench.errors import BadInput
from workbench.merge.lora import trained_on
from workbench.merge.probe import DEFAULT_TOLERANCE, MergeReport
from workbench.store.files import staged_folder
from workbench.system.failures import disk_full_as
from workbench.system.output_paths import check_new_folder

HOW = "streaming lora merge"
CHECKS = ("auto", "structure", "logits")
LOGITS_CHECK_AUTO_MAX_BYTES = 1 << 30  # auto: the logits check loads the model twice (one at a time), in float32


@dataclass
class StreamReport:
    shards: int
    tensors: int
    tensors_merged: int  # LoRA deltas (and LoRA biases) added
    tensors_replaced: int  # modules_to_save / saved base layers
    tensors_dequantized: int  # --into dequantized: weights round-tripped through the training's 4-bit quantization
    largest_shard_bytes: int
    check: str  # "structure" | "logits"
    logits: MergeReport | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["logits"] = self.logits.__dict__ if self.logits else None
        return d


def choose_method(plan: MergePlan, streaming: bool | None) -> tuple[str, str | None]:
    """("streaming" | "in-memory", a note for the user or None). Streaming is the default for a sharded base;
    forced (streaming=True) on an adapter it cannot do, it is a BadInput, never a silent in-memory merge."""
    reasons = "; ".join(plan.unsupported)
    if streaming is True:
        if plan.unsupported:
            raise BadInput(f"--streaming cannot merge adapter '{plan.adapter.path}': {reasons}; use --in-memory")
        return "streaming", None
    if streaming is False or not plan.sharded:
        return "in-memory", None
    if plan.unsupported:
        return "in-memory", (f"the base is sharded, but the streaming merge cannot do this adapter ({reasons}): "
                             "merging in memory (PEFT merge_and_unload)")
    return "streaming", None


def validate_check(check: str) -> None:
    if check not in CHECKS:
        raise BadInput(f"--check must be one of {', '.join(CHECKS)}, not '{check}'")


def merge_streaming(adapter: Checkpoint, out_dir: Path, *, plan: MergePlan | None = None, check: str = "auto",
                    tolerance: float = DEFAULT_TOLERANCE, progress=None,
                    into: str | None = None) -> tuple[Checkpoint, StreamReport]:
    """`progress`: workbench.cli.progress.Bars or None; one step per shard written, one per shard checked.
    `into`: a QLoRA adapter's target (workbench.merge.qlora.TARGETS; its default when None)."""
    from workbench.merge.qlora import merge_target, plan_dequantize

    validate_check(check)
    check_new_folder(out_dir)
    target = merge_target(adapter, into)
    plan = plan or plan_merge(adapter)
    if target == "dequantized" and plan.quant_settings is None:
        plan_dequantize(plan)
    if plan.unsupported:
        raise BadInput(f"the streaming merge cannot merge adapter '{adapter.path}': {'; '.join(plan.unsupported)}")
    lora = _load_adapter_tensors(plan)
    with staged_folder(out_dir) as build:
        build.mkdir()
        with disk_full_as(out_dir, plan.total_bytes):
            step = progress.task("merging shards", len(plan.shards)) if progress else (lambda n=1: None)
            counts = []
            for shard in plan.shards:
                counts.append(_merge_shard(plan, shard, build / shard.path.name, lora))
                step()
            del lora
            gc.collect()
            _copy_side_files(plan, build)
            ckpt = _checkpoint(plan, build, target)
            ckpt.save_meta()
        report = StreamReport(shards=len(plan.shards), tensors=sum(len(s.entries) for s in plan.shards),
                              tensors_merged=sum(c[0] for c in counts), tensors_replaced=sum(c[1] for c in counts),
                              tensors_dequantized=sum(c[2] for c in counts),
                              largest_shard_bytes=plan.largest_shard_bytes, check="structure")
        check_structure(plan, build, progress)
        if check == "logits" or (check == "auto" and _small_float32(plan)):
            report.check = "logits"
            report.logits, note = check_logits(adapter, build, tolerance, target)
            ckpt.parent["merge_check"] = {"check": "logits", **report.logits.__dict__}
            ckpt.parent.update(note)
            ckpt.save_meta()
    ckpt.path = out_dir.resolve()
    return ckpt, report


def _load_adapter_tensors(plan: MergePlan) -> dict:
    """The adapter's tensors, LoRA factors in float32: PEFT casts half-precision adapter weights to float32 on load
    (autocast_adapter_dtype), and its merge computes in the factors' dtype."""
    import torch

    needed = {d.a_key for d in plan.deltas.values()} | {d.b_key for d in plan.deltas.values()}
    bias_keys = {_bias_key(d) for d in plan.biases.values()}
    out = {}
    with open(plan.adapter_header.path, "rb") as fh:
        for key, entry in plan.adapter_header.entries.items():
            if key in needed or key in bias_keys:
                out[key] = read_tensor(fh, entry).to(torch.float32)
            elif key in plan.replacements.values():
                out[key] = read_tensor(fh, entry)
    return out


def _bias_key(delta) -> str:
    return delta.b_key[: -len(".weight")] + ".bias"


def _merge_shard(plan: MergePlan, shard, target: Path, lora: dict) -> tuple[int, int, int]:
    from workbench.merge.qlora import round_trip

    merged = replaced = dequantized = 0
    with open(shard.path, "rb") as src, open(target, "wb") as dst:
        dst.write(shard.header_bytes)
        for name, entry in shard.entries.items():
            if name not in plan.touched:
                copy_bytes(src, dst, entry)
                continue
            tensor = read_tensor(src, entry)
            if name in plan.replacements:  # PEFT loads a saved base layer first, then merges into it
                tensor = lora[plan.replacements[name]].to(tensor.dtype)
                replaced += 1
            elif name in plan.dequantize:  # what the adapter saw in training, before its delta is added
                tensor = round_trip(tensor, plan.quant_settings, plan.dequantize[name])
                dequantized += 1
            if name in plan.deltas or name in plan.biases:
                _apply_lora(plan, name, tensor, lora)
                merged += 1
            write_tensor(dst, tensor)
            del tensor
        dst.flush()
        os.fsync(dst.fileno())  # a full disk shows here, in this file, not later
    return merged, replaced, dequantized


def _apply_lora(plan: MergePlan, name: str, weight, lora: dict) -> None:
    """In place, exactly PEFT's merge (tuners/lora/layer.py, merge with safe_merge=False): Linear adds the float32
    delta to the weight in the weight's dtype (one rounding); Embedding casts the delta to that dtype first."""
    if name in plan.biases:
        delta = plan.biases[name]
        weight += lora[_bias_key(delta)] * delta.scaling
        return
    delta = plan.deltas[name]
    product = lora[delta.b_key] @ lora[delta.a_key]
    if delta.transpose:
        product = product.T
    product.mul_(delta.scaling)  # in place: the same products as PEFT's `* scaling`, one float32 copy fewer
    if delta.kind == "embedding":
        product = product.to(weight.dtype)
    weight += product


def _copy_side_files(plan: MergePlan, out: Path) -> None:
    """The base's config, generation config, index and tokenizer; the adapter's tokenizer when it saved one."""
    base_dir = Path(plan.base.path)
    for f in base_dir.iterdir():
        if f.is_file() and f.name != META_NAME and (f.name == INDEX_NAME or f.suffix not in WEIGHT_SUFFIXES + (
                ".pth",)) and not (out / f.name).exists():
            shutil.copyfile(f, out / f.name)
    source = Path(plan.adapter.tokenizer_source)
    if source != base_dir:
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, out / name)


def _checkpoint(plan: MergePlan, path: Path, target: str) -> Checkpoint:
    adapter, base = plan.adapter, plan.base
    return Checkpoint(
        path=path, name=f"{adapter.name}-merged", kind="merged", format="hf", base=adapter.base, sha=weights_sha(path),
        parent={"adapter": adapter.name, "adapter_path": str(adapter.path), "adapter_sha": adapter.sha,
                "base": base.name, "base_sha": base.sha, "how": HOW, "shards": len(plan.shards),
                "merge_check": {"check": "structure"}, **trained_on(adapter),
                **({"merge": {"into": target}} if trained_on(adapter) else {})},
    )


def check_structure(plan: MergePlan, out: Path, progress=None) -> None:
    """Every tensor of the base is in the output, with its dtype and shape, and finite; the config loads. A few
    MiB in memory at a time."""
    from transformers import AutoConfig

    step = progress.task("checking shards", len(plan.shards)) if progress else (lambda n=1: None)
    for shard in plan.shards:
        path = out / shard.path.name
        written = read_header(path)
        expected = {n: (e.dtype, e.shape) for n, e in shard.entries.items()}
        if {n: (e.dtype, e.shape) for n, e in written.entries.items()} != expected:
            raise BadInput(f"merge check failed: '{path.name}' does not hold the base's tensors")
        if path.stat().st_size != len(written.header_bytes) + written.data_size:
            raise BadInput(f"merge check failed: '{path.name}' is {path.stat().st_size} bytes, its header says "
                           f"{len(written.header_bytes) + written.data_size}")
        with open(path, "rb") as fh:
            for name, entry in written.entries.items():
                if entry.is_float and not all_finite(fh, entry):
                    raise BadInput(f"merge check failed for '{plan.adapter.path}': '{name}' has NaN or inf after "
                                   "the merge; the adapter seems broken")
        step()
    AutoConfig.from_pretrained(str(out))


def check_logits(adapter: Checkpoint, merged_dir: Path, tolerance: float,
                 target: str = "fp") -> tuple[MergeReport, dict]:
    """The in-memory merge's check: merged logits against base + adapter, both in float32, one model at a time;
    with, for a QLoRA adapter, the lineage note of the merge's cost against the adapter on its quantized base."""
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.merge.probe import compare_logits, probe, probe_tokenizer
    from workbench.merge.qlora import load_unmerged, merge_note, quantized_reference

    tokenizer = probe_tokenizer(adapter)
    reference = quantized_reference(adapter, tokenizer)
    model = load_unmerged(adapter, target)  # the base weights the merge went into
    before, n_tokens, _ = probe(model, tokenizer, torch)
    del model
    gc.collect()
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32)
    after, _, _ = probe(merged, tokenizer, torch)
    del merged
    gc.collect()
    return compare_logits(adapter, before, after, n_tokens, tolerance), merge_note(adapter, target, reference, after)


def _small_float32(plan: MergePlan) -> bool:
    dtypes = {e.dtype for s in plan.shards for n, e in s.entries.items() if n in plan.touched}
    return plan.total_bytes <= LOGITS_CHECK_AUTO_MAX_BYTES and dtypes <= {"F32"}

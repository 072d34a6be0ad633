"""Merging a LoRA adapter into its base, verified: merged logits must match base + adapter on a probe batch."""

from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.errors import BadInput
from workbench.merge.probe import DEFAULT_TOLERANCE, MergeReport, compare_logits, probe, probe_tokenizer
from workbench.store.files import staged_folder
from workbench.system.extras import require
from workbench.system.failures import disk_full_as


def trained_on(adapter: Checkpoint) -> dict:
    """The lineage note of an adapter trained on a quantized base (QLoRA), merged into the full-precision one."""
    from workbench.checkpoints.quantization import quantization_of

    quantization = quantization_of(adapter)
    return {"trained_on_quantization": quantization} if quantization else {}


def merge_adapter(adapter: Checkpoint, out_dir: Path, *, tolerance: float = DEFAULT_TOLERANCE,
                  into: str | None = None) -> tuple[Checkpoint, MergeReport]:
    """`into`: the base weights a QLoRA adapter goes into (workbench.merge.qlora.TARGETS; its default when None)."""
    if adapter.kind != "adapter":
        raise BadInput(f"checkpoint '{adapter.path}' is not an adapter (it is a {adapter.kind} {adapter.format} checkpoint)")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BadInput(f"output folder '{out_dir}' is not empty")
    torch = require("torch", "Merging", "train")
    from workbench.checkpoints.checkpoint import require_base
    from workbench.merge.qlora import load_unmerged, merge_note, merge_target, quantized_reference

    target = merge_target(adapter, into)
    base = require_base(adapter)
    tokenizer = probe_tokenizer(adapter)
    reference = quantized_reference(adapter, tokenizer)  # a QLoRA adapter on its 4-bit base: the merge's cost
    # base + adapter, unmerged, in float32: a QLoRA adapter's base is the target's (a 4-bit merge would round it)
    model = load_unmerged(adapter, target)
    before, n_tokens, _ = probe(model, tokenizer, torch)
    merged = model.merge_and_unload()
    after, _, _ = probe(merged, tokenizer, torch)
    report = compare_logits(adapter, before, after, n_tokens, tolerance)
    with staged_folder(out_dir) as build:
        with disk_full_as(out_dir):
            merged.save_pretrained(str(build))
            tokenizer.save_pretrained(str(build))
        ckpt = Checkpoint(
            path=build, name=f"{adapter.name}-merged", kind="merged", format="hf", base=adapter.base,
            sha=weights_sha(build),
            parent={"adapter": adapter.name, "adapter_path": str(adapter.path), "adapter_sha": adapter.sha,
                    "base": base.name, "base_sha": base.sha, "how": "peft merge_and_unload",
                    "merge_check": report.__dict__, **trained_on(adapter),
                    **merge_note(adapter, target, reference, after)},
        )
        ckpt.save_meta()
    ckpt.path = out_dir.resolve()
    return ckpt, report

"""Merging a LoRA adapter into its base, verified: merged logits must match base + adapter on a probe batch."""

import shutil
from dataclasses import dataclass
from pathlib import Path

from workbench.checkpoint import Checkpoint, weights_sha
from workbench.store.files import publish_dir, staging_dir
from workbench.errors import BadInput
from workbench.failures import disk_full_as
from workbench.extras import require

PROBE_TEXTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Extract the contact from the message: Hi, I'm Ana Silva, 31, from Porto. ana@example.org",
    "Question: Natalia sold clips to 48 of her friends in April. How many clips did she sell?\nAnswer:",
]
DEFAULT_TOLERANCE = 1e-3  # float32 merge; the difference is rounding in the reordered matmuls


@dataclass
class MergeReport:
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    argmax_agreement: float
    tolerance: float
    probe_tokens: int

    @property
    def ok(self) -> bool:
        return self.max_abs_logit_diff <= self.tolerance


def probe_logits(model, tokenizer, torch):
    logits, n_tokens, _ = probe(model, tokenizer, torch)
    return logits, n_tokens


def probe(model, tokenizer, torch):
    """(logits of every real token, their count, the perplexity of PROBE_TEXTS) in one forward pass: the
    perplexity is exp of the mean next-token loss over the real (unpadded) tokens."""
    batch = tokenizer(PROBE_TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits.float()
    mask = batch["attention_mask"].bool()
    targets = batch["input_ids"][:, 1:][mask[:, 1:]]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1][mask[:, 1:]], targets)
    return logits[mask], int(mask.sum()), float(torch.exp(loss))


def probe_tokenizer(adapter: Checkpoint):
    from workbench.models import load_tokenizer

    tokenizer = load_tokenizer(adapter)
    tokenizer.padding_side = "right"
    return tokenizer


def compare_logits(adapter: Checkpoint, before, after, n_tokens: int, tolerance: float) -> MergeReport:
    """The merge check: merged logits against base + adapter; a BadInput when they differ past `tolerance`."""
    diff = (before - after).abs()
    report = MergeReport(
        max_abs_logit_diff=float(diff.max()), mean_abs_logit_diff=float(diff.mean()),
        argmax_agreement=float((before.argmax(-1) == after.argmax(-1)).float().mean()),
        tolerance=tolerance, probe_tokens=n_tokens,
    )
    if not report.ok:
        raise BadInput(
            f"merge check failed for '{adapter.path}': max |logit diff| {report.max_abs_logit_diff:.3g} > {tolerance:g}"
        )
    return report


def trained_on(adapter: Checkpoint) -> dict:
    """The lineage note of an adapter trained on a quantized base (QLoRA), merged into the full-precision one."""
    from workbench.quantization import quantization_of

    quantization = quantization_of(adapter)
    return {"trained_on_quantization": quantization} if quantization else {}


def merge_adapter(adapter: Checkpoint, out_dir: Path, *, tolerance: float = DEFAULT_TOLERANCE,
                  into: str | None = None) -> tuple[Checkpoint, MergeReport]:
    """`into`: the base weights a QLoRA adapter goes into (workbench.merge_qlora.TARGETS; its default when None)."""
    if adapter.kind != "adapter":
        raise BadInput(f"checkpoint '{adapter.path}' is not an adapter (it is a {adapter.kind} {adapter.format} checkpoint)")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BadInput(f"output folder '{out_dir}' is not empty")
    torch = require("torch", "Merging", "train")
    from workbench.checkpoint import require_base
    from workbench.merge_qlora import load_unmerged, merge_note, merge_target, quantized_reference

    target = merge_target(adapter, into)
    base = require_base(adapter)
    tokenizer = probe_tokenizer(adapter)
    reference = quantized_reference(adapter, tokenizer)  # a QLoRA adapter on its 4-bit base: the merge's cost
    # base + adapter, unmerged, in float32: a QLoRA adapter's base is the target's (a 4-bit merge would round it)
    model = load_unmerged(adapter, target)
    before, n_tokens = probe_logits(model, tokenizer, torch)
    merged = model.merge_and_unload()
    after, _ = probe_logits(merged, tokenizer, torch)
    report = compare_logits(adapter, before, after, n_tokens, tolerance)
    tmp = staging_dir(out_dir)
    try:
        with disk_full_as(out_dir):
            merged.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
        ckpt = Checkpoint(
            path=tmp, name=f"{adapter.name}-merged", kind="merged", format="hf", base=adapter.base, sha=weights_sha(tmp),
            parent={"adapter": adapter.name, "adapter_path": str(adapter.path), "adapter_sha": adapter.sha,
                    "base": base.name, "base_sha": base.sha, "how": "peft merge_and_unload",
                    "merge_check": report.__dict__, **trained_on(adapter),
                    **merge_note(adapter, target, reference, after)},
        )
        ckpt.save_meta()
        publish_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ckpt.path = out_dir.resolve()
    return ckpt, report

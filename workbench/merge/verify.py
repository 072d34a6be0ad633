"""The check every merge of several parents ends with: the written folder loads as a user will load it, its logits
on merge/probe.py's PROBE_TEXTS are finite, and its probe perplexity stands beside each parent's.

A merge of several parents has no exact reference to match (unlike one adapter, whose merged logits must equal
base + adapter), so the perplexities are reported, not gated: a merge much worse than its parents shows there."""

import gc
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput


def probe_perplexity(model, tokenizer, what: str = "the merged model") -> tuple[float, int]:
    """(perplexity on the probe texts, probe tokens) of a loaded model; a BadInput when its logits are not finite."""
    import torch

    from workbench.merge.probe import probe

    logits, n_tokens, perplexity = probe(model, tokenizer, torch)
    if not bool(torch.isfinite(logits).all()):
        raise BadInput(f"merge check failed: {what}'s logits on the probe texts have NaN or inf")
    return perplexity, n_tokens


def verify_folder(folder: Path, tokenizer_source: Checkpoint) -> dict:
    """Load the written model from `folder` (float32, transformers) and probe it."""
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.merge.probe import probe_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.eval()
    try:
        perplexity, n_tokens = probe_perplexity(model, probe_tokenizer(tokenizer_source))
    finally:
        del model
        gc.collect()
    return {"loads": True, "logits_finite": True, "probe_perplexity": perplexity, "probe_tokens": n_tokens}


def parent_perplexity(ckpt: Checkpoint) -> float:
    """A parent's probe perplexity: a model as it is, an adapter on its full-precision base."""
    from workbench.merge.probe import probe_tokenizer
    from workbench.runtimes.hf import load_model

    model = load_model(ckpt, as_trained=False)
    try:
        return probe_perplexity(model, probe_tokenizer(ckpt), f"parent '{ckpt.path}'")[0]
    finally:
        del model
        gc.collect()

"""The check every LoRA merge and adapter import ends with: a model's logits on a small probe batch of texts, before
and after, compared token by token."""

from dataclasses import dataclass

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput

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
    from workbench.runtimes.hf import load_tokenizer

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

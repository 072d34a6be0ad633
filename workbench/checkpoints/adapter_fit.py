"""Does a PEFT adapter fit the base it is about to be evaluated on? Checked from file headers, before any load.

Two checks, each a one-line BadInput:
- shape: every LoRA matrix must match the base module it adapts, read from the safetensors headers (no weights
  loaded), by workbench.checkpoints.lora_plan's rule;
- identity: when the adapter names a base that exists here (a folder, or 'default'), the given base must have
  the same weights (sha256 of the weight files).
"""

from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.errors import BadInput


def check_adapter_fits(adapter: Checkpoint, base: Checkpoint) -> None:
    if adapter.kind != "adapter":
        raise BadInput(f"--base applies to PEFT adapters; checkpoint '{adapter.path}' is a {adapter.kind} model")
    if base.format != "hf" or base.kind == "adapter":
        raise BadInput(f"base '{base.path}': an adapter's base must be an HF model folder, not {base.format}")
    check_shapes(adapter, base)
    _check_identity(adapter, base)


def _check_identity(adapter: Checkpoint, base: Checkpoint) -> None:
    named, recorded = adapter.base, adapter.base_checkpoint
    if not named or recorded is None:
        return  # the recorded base is not here (the reason --base was given): the shape check still runs
    if Path(recorded.path).resolve() == Path(base.path).resolve():
        return
    sha_recorded = recorded.sha or weights_sha(recorded.path)
    sha_given = base.sha or weights_sha(base.path)
    if sha_recorded != sha_given:
        raise BadInput(f"adapter '{adapter.path}' was trained on {named} (adapter_config.json), and base "
                       f"'{base.path}' has different weights (sha256 {sha_given[:12]} vs {sha_recorded[:12]})")


def check_shapes(adapter: Checkpoint, base: Checkpoint) -> None:
    """The shape rule is the merge plan's (fan_in_fan_out, embeddings, tied lm_head, resized vocabularies): an
    adapter that can be put on a base can be merged into it, and the other way round."""
    from workbench.checkpoints.lora_plan import plan_merge

    plan_merge(adapter, base)

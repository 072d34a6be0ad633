"""What an exporter quantizes: the checkpoint itself, or an adapter merged into its base first."""

from pathlib import Path

from workbench.checkpoint import Checkpoint


def export_source(ckpt: Checkpoint, work: Path, steps) -> tuple[Checkpoint, dict]:
    """(model to export, lineage fields for each artifact: how an adapter was merged and the merge's logit check)."""
    if ckpt.kind != "adapter":
        return ckpt, {}
    from workbench.merge import merge_adapter

    with steps.step(f"merge adapter {ckpt.name} into its base"):
        merged, report = merge_adapter(ckpt, work / "merged")
    return merged, {"merged_with": "peft merge_and_unload", "merge_check": report.__dict__}

"""What every exporter shares: the model it quantizes (an adapter is merged into its base first) and the staged
build, published into the output folder only when complete."""

from collections.abc import Callable
from pathlib import Path

from workbench.checkpoints.checkpoint import DEFAULT_REF, Checkpoint
from workbench.errors import BadInput
from workbench.store.files import staged_folder


def artifact_stem(ckpt: Checkpoint) -> str:
    """What an exported file or folder is named after: the checkpoint's name (the default model's folder name)."""
    return ckpt.path.name if ckpt.name == DEFAULT_REF else ckpt.name


def export_source(ckpt: Checkpoint, work: Path, steps) -> tuple[Checkpoint, dict]:
    """(model to export, lineage fields for each artifact: how an adapter was merged and the merge's logit check)."""
    if ckpt.kind != "adapter":
        return ckpt, {}
    from workbench.merge.lora import merge_adapter

    with steps.step(f"merge adapter {ckpt.name} into its base"):
        merged, report = merge_adapter(ckpt, work / "merged")
    return merged, {"merged_with": "peft merge_and_unload", "merge_check": report.__dict__}


def build_staged(out_dir: Path, progress: bool, build: Callable) -> list[Checkpoint]:
    """Run build(out, work, steps): it writes the artifacts into `out` and what is not published into `work`,
    both in a hidden folder beside out_dir, then out becomes out_dir; a failure or Ctrl-C leaves nothing there.
    Inside the export pipeline's staging of out_dir this builds in place (store.files.staged_folder).
    Returns the artifacts at their published paths."""
    from workbench.system.progress import Steps

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BadInput(f"output folder '{out_dir}' is not empty; choose a new or empty folder")
    with staged_folder(out_dir) as out:
        work = out.parent / f"{out.name}.work"
        out.mkdir()
        work.mkdir()
        steps = Steps(progress)
        with steps.progress:
            built = build(out, work, steps)
    for art in built:
        art.path = out_dir / art.path.name
    return built

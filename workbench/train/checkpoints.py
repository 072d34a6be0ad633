"""Resumable training checkpoints, kept beside the output folder until the adapter is published:

    OUT.checkpoints/recipe.json         what the checkpoints were trained from (recipe, data sha, base sha)
    OUT.checkpoints/checkpoint-N/       transformers' own checkpoint: adapter, optimizer, scheduler, RNG, state
    OUT.checkpoints/.staging/           where the Trainer writes a checkpoint before it is renamed into place

A checkpoint reaches `checkpoint-N` only by one rename of a folder the Trainer finished writing, so a process
killed mid-save leaves a half-written folder in .staging, never one that --resume would pick.
"""

import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import BadInput
from workbench.store.files import read_json, write_json_atomic
from workbench.system.faultpoints import pause_point
from workbench.system.processes import is_dead

SUFFIX = ".checkpoints"
STAGING = ".staging"
RECIPE = "recipe.json"
KEEP = 2  # complete checkpoints kept: the newest, and one before it
PREFIX = "checkpoint-"
# Recipe keys that cannot change what the optimizer does, so they may differ when resuming.
NEUTRAL = {"name", "report_to", "eval_during_training", "data_checks", "training.save_steps"}


def checkpoints_dir(out: Path) -> Path:
    out = Path(out).resolve()
    return out.parent / f"{out.name}{SUFFIX}"


def complete_checkpoints(root: Path) -> list[Path]:
    """The checkpoints that were moved into place whole, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()
             and (p / "trainer_state.json").is_file()]
    return sorted(found, key=_step)


def _step(path: Path) -> int:
    return int(path.name[len(PREFIX):])


def recipe_fingerprint(config: dict, train_data_sha: str, base_sha: str | None) -> dict:
    return {"config": config, "train_data_sha": train_data_sha, "base_sha": base_sha}


def _flat(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


def recipe_changes(saved: dict, now: dict) -> list[str]:
    """'key: old -> new' for each recipe key (or data/base sha) that differs and matters to the weights."""
    old = _flat({**saved.get("config", {}), "train_data_sha": saved.get("train_data_sha"),
                 "base_sha": saved.get("base_sha")})
    new = _flat({**now["config"], "train_data_sha": now["train_data_sha"], "base_sha": now["base_sha"]})
    changed = []
    for key in sorted(old.keys() | new.keys()):
        if any(key == n or key.startswith(n + ".") for n in NEUTRAL):
            continue
        if old.get(key) != new.get(key):
            changed.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return changed


@dataclass
class CheckpointPlan:
    """Where a training run saves resumable checkpoints and which one (if any) it resumes from."""

    root: Path
    fingerprint: dict
    save_steps: int | None
    resume_from: Path | None = None
    note: str | None = None  # what --resume found, for the command to print

    @property
    def resumed_step(self) -> int:
        return _step(self.resume_from) if self.resume_from else 0

    def trainer_args(self) -> dict:
        """TrainingArguments fields: the Trainer saves into .staging, the callback moves each save into place."""
        if self.save_steps is None:
            return {"output_dir": str(self.root / STAGING), "save_strategy": "no"}
        return {"output_dir": str(self.root / STAGING), "save_strategy": "steps", "save_steps": self.save_steps,
                "save_total_limit": None}

    def start(self) -> None:
        """Before training: record the recipe, drop whatever a killed save left half-written."""
        shutil.rmtree(self.root / STAGING, ignore_errors=True)
        (self.root / STAGING).mkdir(parents=True, exist_ok=True)
        from workbench.system.processes import identity

        write_json_atomic(self.root / RECIPE, {**self.fingerprint, "owner": identity()})

    def finish(self) -> None:
        """After the adapter is published: nothing left to resume."""
        shutil.rmtree(self.root, ignore_errors=True)

    def abandon(self) -> None:
        """Training failed: keep the folder only if it holds a checkpoint to resume from."""
        if not complete_checkpoints(self.root):
            shutil.rmtree(self.root, ignore_errors=True)

    def callback(self, transformers):
        plan = self

        class PublishCheckpoint(transformers.TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                pause_point(f"train-step-{state.global_step}")  # tests kill a run here (before this step's save)

            def on_save(self, args, state, control, **kwargs):
                plan.publish(Path(args.output_dir) / f"{PREFIX}{state.global_step}")

        return PublishCheckpoint()

    def publish(self, staged: Path) -> None:
        final = self.root / staged.name
        pause_point("train-checkpoint-staged")
        if final.exists():  # the same step saved again (a resumed run re-reaching it): the new one wins
            shutil.rmtree(final)
        os.replace(staged, final)
        _fsync_dir(self.root)
        for old in complete_checkpoints(self.root)[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def plan_checkpoints(out: Path, fingerprint: dict, save_steps: int | None, *, resume: bool) -> CheckpointPlan:
    """Checked before any model loads: what --resume can continue, or why an earlier run's checkpoints are in
    the way. Nothing is written here."""
    root = checkpoints_dir(out)
    plan = CheckpointPlan(root=root, fingerprint=fingerprint, save_steps=save_steps)
    saved = read_json(root / RECIPE) if (root / RECIPE).is_file() else {}
    owner = saved.get("owner")
    if owner and owner.get("host") == socket.gethostname() and not is_dead(owner):
        raise BadInput(f"{root}: another `wb train` (pid {owner['pid']}) is training into '{out}' now")
    found = complete_checkpoints(root)
    if not resume:
        if found:
            raise BadInput(f"{root}: checkpoints of an unfinished training run into '{out}' (last at step "
                           f"{_step(found[-1])}): pass --resume to continue it, or delete that folder to start over")
        return plan
    if not found:
        why = "" if save_steps else " (this recipe saves none: set training.save_steps)"
        plan.note = f"nothing to resume in {root}{why}: training from step 0"
        return plan
    changes = recipe_changes(saved, fingerprint)
    if changes:
        shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise BadInput(f"--resume: the recipe changed since the checkpoints in {root} were saved ({shown}); "
                       "train with the recipe they were made with, or delete that folder to start over")
    state = json.loads((found[-1] / "trainer_state.json").read_text(encoding="utf-8"))
    if state.get("max_steps") and state["global_step"] >= state["max_steps"]:
        plan.note = f"resuming from {found[-1].name}: training had finished; saving the adapter"
    else:
        plan.note = f"resuming from {found[-1].name} (step {state['global_step']} of {state.get('max_steps')})"
    plan.resume_from = found[-1]
    return plan

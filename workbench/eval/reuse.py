"""When a recorded eval run can stand for a new one: `wb eval --matrix` reuses a member's earlier run instead of
evaluating it again (`--no-reuse` evaluates anyway).

Two evals are identical when everything that decides their answers and scores is equal, as recorded in the run's
manifest under "identity" (`identity()`):

- checkpoint_sha: the sha256 of the checkpoint's weight files, and base_sha: for an adapter, that of the base it
  is put on;
- suite_sha: the sha256 of the suite file, and items_sha: that of every task's items as loaded (the data files a
  suite names can change while the suite file does not); scorer_files: the sha256 of each `type: python` scorer's
  source file;
- limit, and the lm-eval plans (tasks, limit, few-shot, batch size, chat template, generation arguments, seed,
  include path, benchmark mirror);
- the runtime settings (backend, dtype, device, seed, vLLM and endpoint arguments);
- the versions of Python, wb and the libraries it runs (environment.versions).

Only runs that finished ("ok") and recorded an identity are reused: runs recorded before wb kept one never are.
Not covered: files outside the checkpoint's weights (its tokenizer and chat template) and modules a scorer's file
imports in turn; pass --no-reuse after changing those.
"""

import hashlib
import json

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.eval.scorers import function_source_sha
from workbench.system.environment import versions

# Plan keys that say how a result is computed or where a prepared object sits, not what it is.
NOT_IN_IDENTITY = ("prepared", "use_cache")


def identity(ckpt: Checkpoint, suite, *, limit: int | None, run_options: dict, plans: list[dict]) -> dict:
    """What an eval run of `ckpt` on the loaded `suite` with these settings is identified by (JSON values)."""
    items = json.dumps(suite.items, sort_keys=True, default=str).encode()
    record = {
        "checkpoint_sha": ckpt.sha,
        "base_sha": (ckpt.to_dict().get("base_resolved") or {}).get("sha"),
        "suite_sha": suite.sha,
        "items_sha": hashlib.sha256(items).hexdigest(),
        "scorer_files": {s.function: function_source_sha(s.function) for task in suite.config.tasks
                         for s in task.scorers if s.type == "python"},
        "limit": limit,
        "harness": [{k: v for k, v in plan.items() if k not in NOT_IN_IDENTITY} for plan in plans],
        "run_options": {k: v for k, v in run_options.items() if k not in NOT_IN_IDENTITY},
        "versions": versions(),
    }
    return json.loads(json.dumps(record, sort_keys=True, default=str))  # as a manifest reads back


def find_identical(manifests: list[dict], wanted: dict) -> str | None:
    """The newest finished eval run recorded with this identity, or None (always, for a checkpoint without a
    weights sha: an endpoint's)."""
    if not wanted.get("checkpoint_sha"):
        return None
    for manifest in manifests:  # newest first
        if manifest.get("kind") == "eval" and manifest.get("status") == "ok" and manifest.get("identity") == wanted:
            return manifest["run_id"]
    return None

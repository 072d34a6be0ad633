"""Hugging Face hub ids as checkpoints: `org/name` and `org/name@revision`, through huggingface_hub's cache
(offline with HF_HUB_OFFLINE=1 once the snapshot is cached; downloaded when the hub is reachable)."""

import re
from pathlib import Path

from workbench.errors import BadInput
from workbench.system.extras import require

_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?$")


def parse_hub_id(ref: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) when `ref` reads as a hub id, else None."""
    m = _HUB_ID.match(str(ref))
    return (m.group("repo"), m.group("rev")) if m else None


def snapshot(repo: str, revision: str | None) -> tuple[Path, dict]:
    """The local snapshot folder of repo@revision and {"id", "revision", "commit"}; BadInput when the hub
    cannot provide it (not cached while offline, no such repo or revision)."""
    hf = require("huggingface_hub", "Loading a checkpoint by hub id", "eval")
    errors = require("huggingface_hub.errors", "Loading a checkpoint by hub id", "eval")
    constants = require("huggingface_hub.constants", "Loading a checkpoint by hub id", "eval")
    from workbench.checkpoints.hub_probe import go_offline_if_unreachable

    ref = f"{repo}@{revision}" if revision else repo
    offline = go_offline_if_unreachable()  # one probe, not the hub client's retries with backoff
    try:
        path = Path(hf.snapshot_download(repo, revision=revision))
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
        raise BadInput(f"checkpoint '{ref}': not a local path, and the hub id is not in the Hugging Face cache "
                       f"({constants.HF_HUB_CACHE}) while the hub is out of reach "
                       f"({offline or type(exc).__name__})") from None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:
        raise BadInput(f"checkpoint '{ref}': {type(exc).__name__} on the Hugging Face hub") from None
    return path, {"id": repo, "revision": revision or "main", "commit": path.name}

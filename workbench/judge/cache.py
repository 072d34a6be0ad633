"""The judge's answer cache: one JSON file per (endpoint, judge model, full request), under $WB_HOME/judge-cache
(or $WB_JUDGE_CACHE).

Only answers that passed validation are stored, so a rerun sends no requests for them and retries the rest.
The request holds the prompt and sampling settings, never the endpoint's credentials.
"""

import hashlib
import json
import os
from pathlib import Path

from workbench.store.files import read_json, write_json_atomic
from workbench.system.home import home


def cache_dir() -> Path:
    env = os.environ.get("WB_JUDGE_CACHE")
    return Path(env) if env else home() / "judge-cache"


class JudgeCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_dir()

    @staticmethod
    def key(model_id: str, request: dict, endpoint: str = "") -> str:
        blob = json.dumps({"model": model_id, "request": request, **({"endpoint": endpoint} if endpoint else {})},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        try:
            return read_json(path)["content"]
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            return None

    def put(self, key: str, model_id: str, content: str) -> None:
        write_json_atomic(self._path(key), {"model": model_id, "content": content})

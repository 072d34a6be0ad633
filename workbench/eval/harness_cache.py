"""Caches for lm-eval runs, under $WB_HOME/lm_eval/.

Two layers:
- requests: lm-eval's own CachingLM (`simple_evaluate(use_cache=...)`), a SQLite db per model + numerics
  settings. The model backends write each answer as soon as it is computed (cache_hook.add_partial, with
  autocommit), so a run killed midway (Ctrl-C, kill -9) resumes without recomputing finished requests.
- results: the whole HarnessResult under a key over everything that can change a score (weights, backend,
  settings, library versions, each task's resolved config and data hashes): an unchanged rerun loads no model.
"""

import hashlib
import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path

from workbench.store.files import read_json, write_json_atomic
from workbench.system.home import home

RESULTS_SCHEMA = 1


def cache_root() -> Path:
    return home() / "lm_eval"


def fingerprint(obj) -> str:
    """sha256 of a JSON-able structure; callables and other objects by their qualified name (no addresses)."""
    text = json.dumps(obj, sort_keys=True, default=lambda o: getattr(o, "__qualname__", type(o).__qualname__))
    return hashlib.sha256(text.encode()).hexdigest()


def requests_db(model_key: str) -> str:
    """The `use_cache` prefix lm-eval takes (it appends `_rank<N>.db`)."""
    return str(cache_root() / "requests" / model_key)


def result_path(key: str) -> Path:
    return cache_root() / "results" / f"{key}.json"


def load_result(key: str) -> dict | None:
    path = result_path(key)
    if not path.exists():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed and overwritten
    return data.get("result") if data.get("schema") == RESULTS_SCHEMA and data.get("key") == key else None


def save_result(key: str, result: dict) -> None:
    write_json_atomic(result_path(key), {"schema": RESULTS_SCHEMA, "key": key, "result": result})


_COUNTS = re.compile(r"Cached requests: (\d+), Requests remaining: (\d+)")


class _RequestCounts(logging.Handler):
    """Collects the per-request-type counts CachingLM logs ("Cached requests: X, Requests remaining: Y")."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.cached = 0
        self.computed = 0

    def emit(self, record: logging.LogRecord) -> None:
        match = _COUNTS.search(record.getMessage())
        if match:
            self.cached += int(match.group(1))
            self.computed += int(match.group(2))


@contextmanager
def counting_requests():
    """Yields a counter of requests answered from the request cache vs computed by the model."""
    logger = logging.getLogger("lm_eval.api.model")
    handler = _RequestCounts()
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

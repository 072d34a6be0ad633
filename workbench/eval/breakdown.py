"""Metrics broken down by item tag or metadata value: how such a metric row is named, and which samples it covers.

A task's metric `label` is also reported for each tag its items carry, as the row `label[tag=TAG]`, and for each
value of a metadata key the task lists in `breakdown:`, as `label[KEY=VALUE]`; the row carries
`"breakdown": {"key": "tag" | KEY, "value": VALUE}`. Its value is the mean of `label` over the samples in the group,
so gates and `wb compare` pair it on those samples alone (`group_scores`); `sample_scores` gives any metric row's
per-sample scores, lm-eval's included, for that pairing."""

import json
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.store import Run

TAG = "tag"


def value_text(value) -> str:
    """A metadata value as a metric name shows it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def metric_name(metric: str, key: str, value: str) -> str:
    return f"{metric}[{key}={value}]"


def base_metric(metric: str, breakdown: dict | None) -> str:
    """The metric a breakdown row is a part of (the row's own name when it is no breakdown)."""
    if not breakdown:
        return metric
    return metric.removesuffix(f"[{breakdown['key']}={breakdown['value']}]")


def in_group(sample: dict, key: str, value: str) -> bool:
    if key == TAG:
        return value in (sample.get("tags") or [])
    metadata = sample.get("metadata")
    return isinstance(metadata, dict) and key in metadata and value_text(metadata[key]) == value


def groups(samples: list[dict], keys: list[str]) -> list[tuple[str, str]]:
    """(key, value) of every group the samples fall in: their tags, then the values of each breakdown key."""
    found = [(TAG, tag) for tag in sorted({t for s in samples for t in s.get("tags") or []})]
    for key in keys:
        values = {value_text(s["metadata"][key]) for s in samples
                  if isinstance(s.get("metadata"), dict) and key in s["metadata"]}
        found += [(key, v) for v in sorted(values)]
    return found


def group_scores(samples: list[dict], metric: str, breakdown: dict | None) -> dict[str, float]:
    """id -> score of `metric` (a metric row's name and its breakdown) over the samples the row covers."""
    base = base_metric(metric, breakdown)
    out = {}
    for s in samples:
        if "id" not in s or (breakdown and not in_group(s, breakdown["key"], breakdown["value"])):
            continue
        value = (s.get("scores") or {}).get(base)
        if isinstance(value, (int, float)) and not math.isnan(value):
            out[str(s["id"])] = float(value)
    return out


def sample_scores(run: "Run", task: str, metric: str, source: str | None, breakdown: dict | None = None
                  ) -> dict[str, float]:
    """id -> per-sample score: task samples' `scores` (for a per-tag row, of the samples with that tag), or
    lm-eval samples' `metrics` under the metric's filter."""
    if source != "lm-eval":
        return group_scores(run.samples(task), metric, breakdown)
    name, _, filt = metric.partition(",")
    rows = [r for r in run.samples(f"lm-eval.{task}") if (r.get("filter") or "none") == (filt or "none")]
    raw = {str(r.get("doc_id")): (r.get("metrics") or {}).get(name) for r in rows}
    return {k: float(v) for k, v in raw.items() if isinstance(v, (int, float)) and not math.isnan(v)}

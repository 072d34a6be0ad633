"""What a report of runs says, as plain data (no HTML): the runs' identity, their metrics with the per-tag
breakdown grouped under each base metric, every later run compared with the first (compare.runs' rows, the
gate's significance verdicts), the gates' results when given, and the samples side by side.

Every number comes from compare/ and gate/ as `wb compare`, `wb eval --matrix` and the gate reports compute it;
nothing here recomputes a statistic."""

import string
from dataclasses import dataclass, field
from pathlib import Path

from workbench.compare.runs import (
    Comparison,
    compare,
    comparison_cells,
    confidence_interval,
    row_direction,
    sample_diffs,
)
from workbench.errors import BadInput
from workbench.gate.reports import TEST_NAMES
from workbench.gate.rules import GateReport
from workbench.gate.verdicts import significance_verdicts
from workbench.store import Run
from workbench.system.output_paths import check_new_file

DEFAULT_SAMPLES = 100  # per task: a report of an MMLU run would otherwise carry thousands of prompts
NOT_SAMPLES = {"train_log"}  # sample files that are not per-item records


def check_report_path(path: Path, what: str) -> None:
    """Before any work: the report's folder must exist and be writable (a typo in a CI path is an error, not a new
    folder), and the path must not be a folder."""
    path = Path(path)
    if not path.absolute().parent.is_dir():
        raise BadInput(f"{what} '{path}': no such folder '{path.absolute().parent}'")
    check_new_file(path, what)


def breakdown_of(row: dict) -> tuple[str, str | None]:
    """(base metric, 'key=value') of a per-tag or per-metadata row (`breakdown: {key, value}`, named
    'label[key=value]'); (metric, None) for an overall row."""
    part = row.get("breakdown")
    if not isinstance(part, dict) or "key" not in part:
        return row["metric"], None
    label = f"{part['key']}={part.get('value')}"
    suffix = f"[{label}]"
    base = row["metric"][:-len(suffix)] if row["metric"].endswith(suffix) else row["metric"].split("[", 1)[0]
    return base, label


def fmt(value, stderr=None) -> str:
    """A metric's value as `wb compare` and `wb eval` print it: 4 decimals, ± stderr when there is one."""
    if value is None:
        return "-"
    return f"{value:.4f} ± {stderr:.4f}" if stderr else f"{value:.4f}"


@dataclass
class MetricGroup:
    """A task's metric and, under it, its breakdown rows (per tag or metadata value)."""

    task: str
    metric: str
    rows: dict[int, dict] = field(default_factory=dict)  # run index -> metric row
    breakdown: dict[str, dict[int, dict]] = field(default_factory=dict)  # 'tag=heldout' -> run index -> row


def metric_groups(runs: list[Run]) -> list[MetricGroup]:
    """Every (task, base metric) of any run, in the order the runs record them, with its breakdown rows."""
    groups: dict[tuple[str, str], MetricGroup] = {}
    for i, run in enumerate(runs):
        for row in run.metrics:
            base, label = breakdown_of(row)
            group = groups.setdefault((row["task"], base), MetricGroup(row["task"], base))
            (group.rows if label is None else group.breakdown.setdefault(label, {}))[i] = row
    return list(groups.values())


def _cells(rows: dict[int, dict], count: int) -> dict:
    ns = {rows[i].get("n") for i in rows}
    return {"n": "/".join(str(rows[i].get("n") if i in rows else "-") for i in range(count)) if len(ns) > 1
            else str(next(iter(ns), "") if ns != {None} else "-"),
            "values": [fmt(rows[i].get("value"), rows[i].get("stderr")) if i in rows else "-" for i in range(count)]}


def metrics_table(groups: list[MetricGroup], count: int) -> list[dict]:
    return [{"task": g.task, "metric": g.metric, **_cells(g.rows, count),
             "breakdown": [{"label": label, **_cells(rows, count)} for label, rows in g.breakdown.items()]}
            for g in groups]


def _series(rows_per_x: list[dict[int, dict]], count: int) -> list[dict]:
    """Per run: the bar heights and their 95% interval half-widths (compare.runs.confidence_interval)."""
    series = []
    for i in range(count):
        values, errors = [], []
        for rows in rows_per_x:
            row = rows.get(i) or {}
            interval = confidence_interval(row.get("value"), row.get("stderr"))
            values.append(row.get("value"))
            errors.append(None if interval is None else row["value"] - interval[0])
        series.append({"run": i, "values": values, "errors": errors})
    return series


def charts(groups: list[MetricGroup], count: int) -> list[dict]:
    """A bar chart per task over its metrics, and one per task over its breakdown rows (title, x, series)."""
    out = []
    for task in dict.fromkeys(g.task for g in groups):
        mine = [g for g in groups if g.task == task and g.rows]
        out.append({"task": task, "kind": "metrics", "x": [g.metric for g in mine],
                    "series": _series([g.rows for g in mine], count)})
    for task in dict.fromkeys(g.task for g in groups if g.breakdown):
        pairs = [(f"{g.metric} [{label}]", rows) for g in groups if g.task == task for label, rows in g.breakdown.items()]
        out.append({"task": task, "kind": "breakdown", "x": [x for x, _ in pairs],
                    "series": _series([rows for _, rows in pairs], count)})
    return out


def comparison_section(a: Run, b: Run, cmp: Comparison) -> dict:
    """`wb compare A B`'s table (its own cells), each row with the gate's significance verdict, breakdown rows
    placed under their base metric."""
    verdicts = significance_verdicts(a, b, cmp)
    labels = {(m["task"], m["metric"]): breakdown_of(m) for m in a.metrics + b.metrics}
    rows = []
    for row, cells in zip(cmp.rows, comparison_cells(cmp)):
        base, label = labels.get((row.task, row.metric), (row.metric, None))
        rows.append({**cells, "base": base, "breakdown": label, "direction": row_direction(row),
                     "verdict": verdicts.get((row.task, row.metric), "-")})
    order = {key: i for i, key in enumerate(dict.fromkeys((r["task"], r["base"]) for r in rows))}
    rows.sort(key=lambda r: (order[(r["task"], r["base"])], r["breakdown"] is not None))  # stable: else as recorded
    return {"a": cmp.run_a, "b": cmp.run_b, "checkpoint_a": cmp.checkpoint_a, "checkpoint_b": cmp.checkpoint_b,
            "rows": rows, "setting_differences": cmp.setting_differences}


def gate_section(report: GateReport) -> dict:
    """The gates' results as the Markdown and JUnit reports give them."""
    def num(value, spec=".4f"):
        return "-" if value is None else format(value, spec)

    rows = []
    for r in report.results:
        level = 1 - r.spec.get("significance", 0.05)
        rows.append({"gate": r.gate, "status": r.status, "value": num(r.value), "baseline": num(r.baseline_value),
                     "delta": num(r.delta, "+.4f"), "n": "-" if r.n is None else str(r.n),
                     "test": TEST_NAMES.get(r.test, r.test or "-"), "p": num(r.p_value, ".3g"),
                     "ci": "-" if r.ci_low is None else f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}] ({level:.0%})",
                     "reason": r.reason, "warnings": r.warnings})
    return {"passed": report.passed, "summary": report.summary(), "run": report.run_id,
            "baseline": report.baseline_id, "rows": rows, "warnings": report.warnings}


def _scores_text(scores: dict) -> str:
    return "  ".join(f"{k}={v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k}={v}"
                     for k, v in (scores or {}).items())


def _text(value) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def samples_section(runs: list[Run], limit: int | None) -> list[dict]:
    """Per task every run recorded samples for: items all runs scored, each run's output and scores, and whether
    any run scored it differently from the first (compare.runs.sample_diffs' better/worse). With a limit, the
    disagreements are kept first."""
    names = set(runs[0].sample_files())
    for run in runs[1:]:
        names &= set(run.sample_files())
    tasks = []
    for task in sorted(names - NOT_SAMPLES):
        pairs = [sample_diffs(runs[0], other, task) for other in (runs[1:] or runs[:1])]
        by_id = [{d["id"]: d for d in diffs} for diffs in pairs[1:]]
        items = []
        for first in pairs[0]:
            rows = [first] + [other.get(first["id"]) for other in by_id]
            if any(r is None for r in rows):
                continue
            outputs = [first["a"]] + [r["b"] for r in rows] if len(runs) > 1 else [first["a"]]
            scores = [first["scores_a"]] + [r["scores_b"] for r in rows] if len(runs) > 1 else [first["scores_a"]]
            items.append({"id": str(first["id"]), "prompt": _text(first["prompt"]),
                          "reference": _text(first["reference"]), "outputs": [_text(o) for o in outputs],
                          "scores": [_scores_text(s) for s in scores],
                          "disagree": len(runs) > 1 and any(r["better"] or r["worse"] for r in rows)})
        shown = items
        if limit is not None and len(items) > limit:
            keep = [i for i, s in enumerate(items) if s["disagree"]][:limit]
            keep += [i for i, s in enumerate(items) if not s["disagree"]][:limit - len(keep)]
            shown = [items[i] for i in sorted(keep)]
        if items:
            tasks.append({"task": task, "items": shown, "total": len(items),
                          "disagreements": sum(s["disagree"] for s in items)})
    return tasks


def run_identity(run: Run, letter: str) -> dict:
    m = run.manifest
    ck = m.get("checkpoint") or {}
    runtime = m.get("runtime") or {}
    return {"letter": letter, "run_id": run.run_id, "checkpoint": ck.get("name") or "?",
            "fields": [
                ("checkpoint", ck.get("name")), ("kind / format", " / ".join(str(ck.get(k) or "-")
                                                                             for k in ("kind", "format"))),
                ("checkpoint sha256", (ck.get("sha") or "")[:16] or None), ("base", ck.get("base")),
                ("path", ck.get("path")), ("suite", m.get("suite")),
                ("suite sha256", (m.get("suite_sha") or "")[:16] or None), ("limit", m.get("limit")),
                ("status", m.get("status")), ("started", m.get("created_at")), ("finished", m.get("finished_at")),
                ("runtime", " ".join(str(v) for v in runtime.values()) or None), ("command", m.get("command")),
            ],
            "versions": [(k, str(v)) for k, v in (m.get("versions") or {}).items()]}


def letters(count: int) -> list[str]:
    return [string.ascii_uppercase[i] if i < 26 else f"R{i + 1}" for i in range(count)]


def report_content(runs: list[Run], *, gate: GateReport | None = None, samples: int | None = DEFAULT_SAMPLES,
                   allow_differences: bool = False) -> dict:
    """Everything the page shows. runs[0] is the reference: each later run is compared with it (B - A), as
    `wb compare FIRST OTHER` would; runs whose settings that change scores differ are refused unless
    allow_differences (then the differences are listed)."""
    if not runs:
        raise BadInput("a report needs at least one run")
    names = letters(len(runs))
    comparisons = [comparison_section(runs[0], other, compare(runs[0], other, allow_differences=allow_differences))
                   for other in runs[1:]]
    groups = metric_groups(runs)
    return {"runs": [run_identity(run, names[i]) for i, run in enumerate(runs)],
            "metrics": metrics_table(groups, len(runs)), "charts": charts(groups, len(runs)),
            "has_breakdown": any(g.breakdown for g in groups), "comparisons": comparisons,
            "gate": gate_section(gate) if gate is not None else None, "samples": samples_section(runs, samples),
            "sample_limit": samples}

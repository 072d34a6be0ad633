"""What the dashboard pages show, as plain rows: read through Store and compare.py only, so every number is
the one the CLI prints. No Streamlit here; dashboards/store_cache.py caches these calls."""

import re
from pathlib import Path

from workbench.compare.runs import confidence_interval
from workbench.store import Run, Store
from workbench.store.lineage import KIND_ORDER, checkpoint_key, ckpt, during_training

MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def as_text(value) -> str:
    """`value` for a Streamlit element that renders Markdown (st.markdown, captions, headers, alerts, st.metric,
    st.table cells), shown as typed: each ASCII punctuation character backslash-escaped (CommonMark's escape), so
    names, outputs and data make no image, link, emphasis, HTML, directive (:red[...]) or formula ($...$)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


def checkpoint_label(c: dict) -> str:
    name = c.get("name") or "?"
    return f"{name} · {c['sha'][:7]}" if c.get("sha") else name


def base_model(c: dict) -> str | None:
    """The base model a checkpoint descends from, by name."""
    parent = c.get("parent") or {}
    if c.get("base"):
        return c["base"]
    if c.get("kind") == "base":
        return c.get("name")
    return parent.get("base") or parent.get("name")


def run_rows(manifests: list[dict]) -> list[dict]:
    """One compact row per run, newest first (the order Store.list_runs gives)."""
    rows = []
    for m in manifests:
        c = ckpt(m)
        rows.append({"run": m["run_id"], "kind": m["kind"], "status": m["status"], "checkpoint": c.get("name"),
                     "checkpoint kind": c.get("kind"), "format": c.get("format"), "base": base_model(c),
                     "suite": m.get("suite"), "created": m["created_at"], "finished": m.get("finished_at")})
    return rows


def eval_runs(manifests: list[dict]) -> list[dict]:
    return [m for m in manifests if m["kind"] == "eval" and m["status"] == "ok"]


def comparable_runs(manifests: list[dict]) -> list[dict]:
    """Finished runs the Compare page pairs: evals, and `wb replay` runs (metrics and samples in the same shape)."""
    return [m for m in manifests if m["kind"] in ("eval", "replay") and m["status"] == "ok"]


def latest_per_checkpoint(manifests: list[dict]) -> list[dict]:
    """The newest finished eval run of each (checkpoint, suite), evals during training left out."""
    seen, out = set(), []
    for m in eval_runs(manifests):
        if during_training(m):
            continue
        key = (checkpoint_key(ckpt(m)), m.get("suite"))
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def leaderboard_rows(store: Store, manifests: list[dict]) -> list[dict]:
    """Long rows (checkpoint, suite, task, metric, value, 95% interval) from each checkpoint's latest eval run."""
    rows = []
    for m in latest_per_checkpoint(manifests):
        c = ckpt(m)
        for metric in store.load(m["run_id"]).metrics:
            ci = confidence_interval(metric.get("value"), metric.get("stderr"))
            rows.append({"checkpoint": checkpoint_label(c), "checkpoint kind": c.get("kind"), "base": base_model(c),
                         "suite": m.get("suite"), "run": m["run_id"], "task": metric["task"],
                         "metric": metric["metric"], "column": f"{metric['task']} / {metric['metric']}",
                         "value": metric.get("value"), "stderr": metric.get("stderr"),
                         "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None, "n": metric.get("n"),
                         "higher_is_better": metric.get("higher_is_better"), "source": metric.get("source")})
    return rows


def latest_suite(manifests: list[dict]) -> str | None:
    """The suite of the newest finished eval run (evals during training left out): what the Leaderboard opens
    on."""
    return next((m.get("suite") for m in latest_per_checkpoint(manifests) if m.get("suite")), None)


def default_sort_column(rows: list[dict], suite: str | None) -> str | None:
    """The Leaderboard's first sort column: the suite's first own task metric (before its lm-eval slice), in the
    order its runs recorded them."""
    mine = [r for r in rows if suite is None or r.get("suite") == suite]
    own = [r for r in mine if r.get("source") == "task"] or mine
    return own[0]["column"] if own else None


def export_rows(store: Store, manifests: list[dict]) -> list[dict]:
    """One row per exported file: its size and what verification measured against the source checkpoint."""
    rows = []
    for m in manifests:
        if m["kind"] != "export" or m["status"] != "ok":
            continue
        outputs = {Path(o["path"]).name: o for o in m.get("outputs") or []}
        files: dict[str, dict] = {}
        for metric in store.load(m["run_id"]).metrics:
            row = files.setdefault(metric["task"], {
                "run": m["run_id"], "source": checkpoint_label(ckpt(m)), "base": base_model(ckpt(m)),
                "format": m.get("format"), "file": metric["task"], "quant": metric.get("quant"),
                "sha": (outputs.get(metric["task"]) or {}).get("sha")})
            row[metric["metric"]] = metric.get("value")
            if metric["metric"] == "same_greedy_answer":
                row["prompts"] = metric.get("n")
        for row in files.values():
            if row.get("size_bytes") is not None:
                row["size_mib"] = row["size_bytes"] / 2**20
            rows.append(row)
    return rows


def pareto_front(points: list[dict], x: str, y: str, y_higher_is_better: bool) -> list[dict]:
    """Points no other point beats on both smaller `x` and better `y`, ordered by x."""
    usable = sorted((p for p in points if p.get(x) is not None and p.get(y) is not None),
                    key=lambda p: (p[x], -p[y] if y_higher_is_better else p[y]))
    front, best = [], None
    for p in usable:
        if best is None or (p[y] > best if y_higher_is_better else p[y] < best):
            front.append(p)
            best = p[y]
    return front


def export_eval_parity(manifests: list[dict]) -> list[tuple[dict, dict]]:
    """(source eval, exported-file eval) pairs: the newest eval of an exported file and of the checkpoint it was
    made from, on the same suite."""
    latest = latest_per_checkpoint(manifests)
    by_sha = {(ckpt(m).get("sha"), m.get("suite")): m for m in latest if ckpt(m).get("sha")}
    pairs = []
    for m in latest:
        c = ckpt(m)
        if c.get("kind") != "quantized":
            continue
        source = by_sha.get(((c.get("parent") or {}).get("sha"), m.get("suite")))
        if source is not None:
            pairs.append((source, m))
    return pairs


def lineage_layout(nodes: dict[str, dict], edges: list[tuple[str, str, str]]) -> dict[str, tuple[int, int]]:
    """(column, row) per node: one column right of its deepest parent; in a column, in its parents' order."""
    parents: dict[str, list[str]] = {}
    for src, dst, _ in edges:
        parents.setdefault(dst, []).append(src)
    column: dict[str, int] = {}

    def col(key: str, seen: frozenset = frozenset()) -> int:
        if key not in column:
            up = [col(p, seen | {key}) + 1 for p in parents.get(key, []) if p not in seen]
            column[key] = max(up + [0])
        return column[key]

    for key in nodes:
        col(key)
    # Column by column, children in the order of their parents' rows: few crossing arrows.
    place: dict[str, tuple[int, int]] = {}
    for c in sorted(set(column.values())):
        members = [k for k in nodes if column[k] == c]
        members.sort(key=lambda k: (min((place[p][1] for p in parents.get(k, []) if p in place), default=0),
                                    KIND_ORDER.get(nodes[k]["kind"], 9), nodes[k]["name"] or ""))
        for row, key in enumerate(members):
            place[key] = (c, row)
    return place


def train_curves(store: Store, run_ids: list[str]) -> list[dict]:
    """The loss log each training run recorded (samples 'train_log'), one row per logged step."""
    rows = []
    for run_id in run_ids:
        run: Run = store.load(run_id)
        label = f"{ckpt(run.manifest).get('name') or '?'} · {run_id[-6:]}"
        for r in run.samples("train_log"):
            rows.append({"run": run_id, "label": label, **r})
    return rows


def training_evals(store: Store, run_id: str, manifests: list[dict]) -> list[dict]:
    """The evals a training run made (eval_during_training), one row per (step, task, metric): those of the run
    and of the killed runs it resumed; a step evaluated twice (before a kill and after the resume) shows the
    later run."""
    train = store.load(run_id).manifest
    family = [*((train.get("resumed_from") or {}).get("train_runs") or []), run_id]  # oldest process first
    mine = [m for m in eval_runs(manifests) if (m.get("lineage") or {}).get("train_run") in family]
    latest: dict[int, dict] = {}
    for m in sorted(mine, key=lambda m: (family.index(m["lineage"]["train_run"]), m["created_at"])):
        latest[m["lineage"]["step"]] = m  # a later process's run of a step replaces an earlier one's
    rows = []
    for step, m in sorted(latest.items()):
        for metric in store.load(m["run_id"]).metrics:
            if metric.get("value") is None:
                continue
            rows.append({"step": step, "task": metric["task"], "metric": metric["metric"],
                         "series": f"{metric['task']}/{metric['metric']}", "value": metric["value"],
                         "stderr": metric.get("stderr"), "n": metric.get("n"),
                         "kind": "regression slice (lm-eval)" if metric.get("source") == "lm-eval" else "task",
                         "base": bool((m.get("lineage") or {}).get("base")), "run": m["run_id"]})
    return rows

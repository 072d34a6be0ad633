"""What the dashboard pages show, as plain rows: read through Store and compare.py only, so every number is
the one the CLI prints. No Streamlit here; dashboards/store_cache.py caches these calls."""

from pathlib import Path

from workbench.compare.runs import confidence_interval
from workbench.store import Run, Store

# Order within a lineage column: bases, then adapters, merged models, exported files.
KIND_ORDER = {"base": 0, "adapter": 1, "merged": 2, "quantized": 3}


def ckpt(manifest: dict) -> dict:
    return manifest.get("checkpoint") or {}


def checkpoint_key(c: dict) -> str:
    return c.get("sha") or c.get("path") or c.get("name") or "?"


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


def during_training(manifest: dict) -> bool:
    """An eval run of the adapter being trained (eval_during_training): shown on the Training page, not as a
    checkpoint of its own on the leaderboard or in the lineage."""
    return bool((manifest.get("lineage") or {}).get("train_run"))


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


def _parent_links(c: dict) -> list[tuple[str, dict]]:
    """(parent key, parent node) per parent of a checkpoint: several for a merge of several adapters
    (`parent.adapters`) or a mergekit merge (`parent.models`), else the one _parent_link finds."""
    p = c.get("parent") or {}
    many = [(entry, "adapter") for entry in p.get("adapters") or []] + [(entry, None) for entry in p.get("models") or []]
    links = [(e["sha"], {"name": e.get("name") or Path(e.get("path") or "?").name, "format": e.get("format"),
                         "kind": kind or e.get("kind") or "source", "sha": e["sha"], "path": e.get("path")})
             for e, kind in many if isinstance(e, dict) and e.get("sha")]
    if links:
        return links
    one = _parent_link(c)
    return [one] if one else []


def _parent_link(c: dict) -> tuple[str, dict] | None:
    """(parent key, parent node) from a checkpoint's lineage record, whichever shape its producer wrote."""
    p = c.get("parent") or {}
    for sha_key, name_key, kind in (("adapter_sha", "adapter", "adapter"), ("base_sha", "base", "base"),
                                    ("sha", "name", None)):
        if p.get(sha_key):
            path = p.get("adapter_path") if sha_key == "adapter_sha" else p.get("base_path") or p.get("path")
            name = p.get(name_key) or (Path(path).name if path else p[sha_key][:12])
            fmt = p.get("format") or ("peft" if kind == "adapter" else None)
            return p[sha_key], {"name": name, "kind": kind or p.get("kind") or "source", "format": fmt,
                                "sha": p[sha_key], "path": path}
    return None


def lineage(manifests: list[dict]) -> tuple[dict[str, dict], list[tuple[str, str, str]]]:
    """Checkpoints every run mentions (nodes, keyed by sha) and how each was made from another (edges)."""
    nodes: dict[str, dict] = {}
    edges: dict[tuple[str, str], str] = {}

    def add(c: dict, run: dict | None) -> str:
        key = checkpoint_key(c)
        node = nodes.setdefault(key, {"key": key, "name": c.get("name"), "kind": c.get("kind"),
                                      "format": c.get("format"), "sha": c.get("sha"), "path": c.get("path"),
                                      "runs": []})
        for field in ("name", "kind", "format", "path"):
            node[field] = node[field] or c.get(field)
        if run is not None and run["run_id"] not in node["runs"]:
            node["runs"].append(run["run_id"])
        for link in _parent_links(c):
            if link[0] == key:
                continue
            parent_key = add(link[1], None)
            p = c.get("parent") or {}
            how = p.get("how") or p.get("method") or ""
            if p.get("how") and p.get("merge_method" if p.get("how") == "mergekit" else "method"):
                how = f"{p['how']} {p.get('merge_method') or p.get('method')}"
            label = f"{how} {p['quant']}".strip() if p.get("quant") else how
            if not edges.get((parent_key, key)):
                edges[(parent_key, key)] = label
        return key

    for m in reversed(manifests):  # oldest first: a checkpoint's producer labels its edge before its consumers
        if not m.get("checkpoint") or during_training(m):
            continue
        source = add(ckpt(m), m)
        if m["kind"] == "merge" and m.get("output"):
            add(m["output"], m)
        for out in m.get("outputs") or []:
            name = Path(out["path"]).stem
            node = {"name": name, "kind": "quantized", "format": m.get("format"), "sha": out.get("sha"),
                    "path": out["path"], "parent": {"sha": source, "name": ckpt(m).get("name"),
                                                    "quant": out.get("quant"), "how": f"{m.get('format')} export"}}
            add(node, m)
    return nodes, sorted((src, dst, how) for (src, dst), how in edges.items())


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


def significance_verdicts(a: Run, b: Run, comparison) -> dict | None:
    """The gate's significance verdict per (task, metric) for B against A as baseline (workbench.gate's paired
    tests: McNemar for pass/fail scores, paired bootstrap otherwise, unpaired on stderrs without samples).
    None when workbench.gate is not importable: the dashboard then leaves the column out rather than guess."""
    try:
        from workbench.config import GateSpec
        from workbench.gate import rules as gate
    except ImportError:
        return None
    from workbench.errors import BadInput

    verdicts = {}
    for row in comparison.rows:
        key = (row.task, row.metric)
        if row.a is None or row.b is None or row.higher_is_better is None:
            verdicts[key] = "-"
            continue
        # max_drop 0: any drop is checked; the verdict below reads the test itself, in both directions.
        spec = GateSpec(task=row.task, metric=row.metric, max_drop=0.0, higher_is_better=row.higher_is_better)
        try:
            verdicts[key] = _verdict(gate.evaluate_gate(b, a, spec), spec.significance)
        except BadInput as exc:
            verdicts[key] = f"not tested: {exc}"
    return verdicts


def _verdict(result, alpha: float) -> str:
    if result.test is None:
        return "not tested (no per-sample scores or stderrs)"
    if result.p_value is not None:
        significant = result.p_value < alpha
        evidence = f"{result.test} p={result.p_value:.3g}"
    else:
        significant = result.ci_low > 0 or result.ci_high < 0
        evidence = f"{result.test} {1 - alpha:.0%} CI of Δ [{result.ci_low:+.4f}, {result.ci_high:+.4f}]"
    if not significant or not result.delta:
        return f"no significant difference ({evidence})"
    better = (result.delta > 0) == result.higher_is_better
    return f"significantly {'better' if better else 'worse'} ({evidence})"

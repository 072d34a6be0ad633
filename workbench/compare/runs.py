"""Comparing runs: `workbench.compare` (what `wb compare` runs), and what the dashboard shows (one code path for
both)."""

import os
from dataclasses import asdict, dataclass, field

from workbench.errors import BadInput
from workbench.eval.breakdown import sample_scores
from workbench.store import Run, Store

# Settings that change scores: two runs that differ here are not directly comparable.
SETTING_KEYS = ("suite", "suite_sha", "limit")
HARNESS_SETTING_KEYS = ("num_fewshot", "limit", "batch_size", "apply_chat_template", "fewshot_as_multiturn",
                        "chat_template_sha256", "seed", "dtype", "device", "gen_kwargs", "model")


@dataclass
class Row:
    task: str
    metric: str
    a: float | None
    b: float | None
    delta: float | None
    n_a: int | None
    n_b: int | None
    stderr_a: float | None
    stderr_b: float | None
    higher_is_better: bool | None
    improved: int | None = None  # paired samples where B scored better than A (lower, for a lower-is-better metric)
    regressed: int | None = None
    missing_reason: str | None = None  # a metric of one run only: why the other has none, when it recorded why


def n_cell(r: Row) -> str:
    """n as the tables show it: one number when the runs agree or only one has the metric, else A's/B's."""
    if r.n_a == r.n_b or r.n_b is None:
        return "" if r.n_a is None else str(r.n_a)
    return str(r.n_b) if r.n_a is None else f"{r.n_a}/{r.n_b}"


def _missing_reason(run: Run, task: str, metric: str) -> str | None:
    """What `run` recorded about a metric it has no value for: a judge scorer it skipped, and why."""
    skipped = (((run.manifest.get("judge") or {}).get("tasks") or {}).get(task) or {}).get(metric) or {}
    return skipped.get("skipped") if isinstance(skipped, dict) else None


@dataclass
class Comparison:
    run_a: str
    run_b: str
    checkpoint_a: str
    checkpoint_b: str
    rows: list[Row]
    setting_differences: list[str] = field(default_factory=list)
    samples: dict[str, list[dict]] | None = None  # per task, outputs of A and B side by side (paired_samples)

    def to_dict(self) -> dict:
        return {"run_a": self.run_a, "run_b": self.run_b, "checkpoint_a": self.checkpoint_a,
                "checkpoint_b": self.checkpoint_b, "setting_differences": self.setting_differences,
                "rows": [asdict(r) for r in self.rows]} | ({"samples": self.samples} if self.samples is not None
                                                             else {})


def compare(a: "str | Run", b: "str | Run", *, store: "Store | str | os.PathLike | None" = None, samples: int = 0,
            allow_differences: bool = False) -> Comparison:
    """Two runs metric by metric (B - A), with paired per-sample counts for task evals. a, b: Run objects, or run
    ids (a unique prefix or suffix, or 'latest') in `store` (default: $WB_STORE, else $WB_HOME/store).
    samples: also the first N per-sample outputs of A and B side by side. Runs whose settings that change scores
    differ (each one named) are a BadInput unless allow_differences; then the differences are listed."""
    if not (isinstance(a, Run) and isinstance(b, Run)):
        st = Store.open(store, writing=False)
        a, b = (r if isinstance(r, Run) else st.resolve(r) for r in (a, b))
    cmp = compare_runs(a, b)
    if cmp.setting_differences and not allow_differences:
        raise BadInput(f"runs {a.run_id} and {b.run_id} are not comparable: settings differ: "
                       f"{'; '.join(cmp.setting_differences)} (pass --allow-differences to compare anyway)")
    if samples:
        cmp.samples = paired_samples(a, b, samples)
    return cmp


def _key(m: dict) -> tuple[str, str]:
    return m["task"], m["metric"]


def _paired_counts(a: Run, b: Run, task: str, metric: str, source: str | None, group: dict | None = None
                   ) -> tuple[int, int] | tuple[None, None]:
    """Samples both runs scored on `metric` (a task's, a judge's or lm-eval's; a per-tag row: those with the tag)
    where B scored higher / lower."""
    before, after = sample_scores(a, task, metric, source, group), sample_scores(b, task, metric, source, group)
    if not before or not after:
        return None, None
    pairs = [(before[i], after[i]) for i in before.keys() & after.keys()]
    return sum(y > x for x, y in pairs), sum(y < x for x, y in pairs)


def setting_differences(a: Run, b: Run) -> list[str]:
    diffs = [f"{k}: {a.manifest.get(k)!r} vs {b.manifest.get(k)!r}" for k in SETTING_KEYS
             if a.manifest.get(k) != b.manifest.get(k)]
    for i, (ha, hb) in enumerate(zip(a.manifest.get("harness") or [], b.manifest.get("harness") or [])):
        sa, sb = ha.get("settings") or {}, hb.get("settings") or {}
        if ha.get("tasks") != hb.get("tasks"):
            diffs.append(f"harness[{i}].tasks: {ha.get('tasks')!r} vs {hb.get('tasks')!r}")
        diffs += [f"harness[{i}].{k}: {sa.get(k)!r} vs {sb.get(k)!r}" for k in HARNESS_SETTING_KEYS
                  if sa.get(k) != sb.get(k)]
        va, vb = sa.get("versions") or {}, sb.get("versions") or {}
        # libraries both runs used (an adapter run adds peft; a llama.cpp run has no torch)
        diffs += [f"harness[{i}].versions.{k}: {va[k]!r} vs {vb[k]!r}" for k in sorted(set(va) & set(vb))
                  if va[k] != vb[k]]
        da, db = _data_hashes(ha.get("sources")), _data_hashes(hb.get("sources"))
        diffs += [f"harness[{i}].data.{t}: {da[t]} vs {db[t]}" for t in sorted(set(da) & set(db)) if da[t] != db[t]]
    return diffs


def _data_hashes(sources: dict | None) -> dict[str, str]:
    """task -> a short description of its data: source kind and the sha256 of its files (mirror, local files)."""
    out = {}
    for task, src in (sources or {}).items():
        files = src.get("files") or {}
        shas = sorted(str(f.get("sha256", ""))[:12] for entry in files.values()
                      for f in (entry if isinstance(entry, list) else [entry]))
        out[task] = f"{src.get('source')}:{','.join(shas)}" if shas else f"{src.get('source')}:{src.get('dataset')}"
    return out


def compare_runs(a: Run, b: Run) -> Comparison:
    ma = {_key(m): m for m in a.metrics}
    mb = {_key(m): m for m in b.metrics}
    rows = []
    for key in list(ma) + [k for k in mb if k not in ma]:
        x, y = ma.get(key, {}), mb.get(key, {})
        va, vb = x.get("value"), y.get("value")
        up, down = _paired_counts(a, b, *key, x.get("source"), (x or y).get("breakdown")) if x and y \
            else (None, None)
        if (x or y).get("higher_is_better") is False:
            up, down = down, up
        missing = (_missing_reason(a, *key) if not x else _missing_reason(b, *key) if not y else None)
        rows.append(Row(task=key[0], metric=key[1], a=va, b=vb,
                        delta=None if va is None or vb is None else vb - va,
                        n_a=x.get("n"), n_b=y.get("n"), stderr_a=x.get("stderr"), stderr_b=y.get("stderr"),
                        higher_is_better=(x or y).get("higher_is_better"), improved=up, regressed=down,
                        missing_reason=missing))
    return Comparison(run_a=a.run_id, run_b=b.run_id, checkpoint_a=a.manifest.get("checkpoint", {}).get("name", "?"),
                      checkpoint_b=b.manifest.get("checkpoint", {}).get("name", "?"), rows=rows,
                      setting_differences=setting_differences(a, b))


def _fmt(value, stderr=None) -> str:
    if value is None:
        return "-"
    text = f"{value:.4f}"
    return f"{text} ± {stderr:.4f}" if stderr else text


def render_table(cmp: Comparison):
    from rich.table import Table

    from workbench.system.console import markup_text, plain

    table = Table(title=plain(f"{cmp.checkpoint_a} ({cmp.run_a})  vs  {cmp.checkpoint_b} ({cmp.run_b})"))
    for col in ("task", "metric", "n", "A", "B", "Δ (B-A)", "B better/worse"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    one_sided = [r for r in cmp.rows if r.a is None or r.b is None]
    for r in cmp.rows:
        if r in one_sided:
            continue
        n = n_cell(r)
        delta = "-" if r.delta is None else f"{r.delta:+.4f}"
        if r.delta is not None and r.higher_is_better is not None and r.delta != 0:
            good = (r.delta > 0) == bool(r.higher_is_better)
            delta = f"[{'green' if good else 'red'}]{delta}[/]"
        paired = "-" if r.improved is None else f"{r.improved}/{r.regressed}"
        table.add_row(plain(r.task), plain(r.metric), n, _fmt(r.a, r.stderr_a), _fmt(r.b, r.stderr_b), delta, paired)
    notes = []
    for side, other in (("A", "B"), ("B", "A")):
        rows = [r for r in one_sided if (r.b if side == "A" else r.a) is None]
        if rows:
            notes.append(markup_text(f"only in {side}: " + ", ".join(
                f"{r.task}/{r.metric}" + (f" ({other}: {r.missing_reason})" if r.missing_reason else "")
                for r in rows)))
    if cmp.setting_differences:
        notes.append("[yellow]settings differ: " + markup_text("; ".join(cmp.setting_differences)) + "[/]")
    table.caption = "\n".join(notes) or None
    return table


def results_table(run: Run):
    from rich.table import Table

    from workbench.system.console import plain

    ck = run.manifest.get("checkpoint", {})
    table = Table(title=plain(f"{ck.get('name')} — run {run.run_id}"))
    for col in ("task", "metric", "n", "value"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for m in run.metrics:
        table.add_row(plain(m["task"]), plain(m["metric"]), str(m.get("n", "")), _fmt(m.get("value"), m.get("stderr")))
    return table


def paired_samples(a: Run, b: Run, limit: int | None) -> dict[str, list[dict]]:
    """For each task both runs generated on: the first `limit` items (all with None) with both outputs side by
    side."""
    out = {}
    for task in sorted(set(a.sample_files()) & set(b.sample_files())):
        rows_a = {s["id"]: s for s in a.samples(task) if "output" in s}
        pairs = []
        for s in b.samples(task):
            if "output" in s and s["id"] in rows_a:
                first = rows_a[s["id"]]
                pairs.append({"id": s["id"], "prompt": first["messages"][-1]["content"], "reference": s.get("reference"),
                              "a": first["output"], "b": s["output"], "scores_a": first.get("scores"),
                              "scores_b": s.get("scores")})
            if limit is not None and len(pairs) == limit:
                break
        if pairs:
            out[task] = pairs
    return out


def prompt_tail(text: str, width: int = 90) -> str:
    """The end of a prompt (where its question is) in at most `width` characters, cut at a word boundary, with an
    ellipsis where words were left out."""
    if len(text) <= width:
        return text
    tail = text[-(width - 1):]
    if not text[-width].isspace():  # it starts mid-word: from the next word on
        words = tail.split(None, 1)
        tail = words[1] if len(words) == 2 else tail
    return "…" + tail.lstrip()


def render_samples(cmp: Comparison, pairs: dict[str, list[dict]]):
    from rich.table import Table

    from workbench.system.console import plain

    tables = []
    for task, rows in pairs.items():
        table = Table(title=plain(f"{task}: {cmp.checkpoint_a} (A) vs {cmp.checkpoint_b} (B), greedy outputs"),
                      show_lines=True)
        for col in ("id", "prompt", "A output", "B output", "same"):
            table.add_column(col, overflow="fold")
        for r in rows:  # outputs and data as text: no markup, and no terminal escape reaches the terminal
            table.add_row(plain(r["id"]), plain(prompt_tail(r["prompt"])), plain(r["a"]), plain(r["b"]),
                          "yes" if r["a"] == r["b"] else "[yellow]no[/]")
        tables.append(table)
    return tables


# --- Shared with the dashboard: the CLI table's cells, intervals, and the per-sample drill-down. ---

Z_95 = 1.959963984540054


def confidence_interval(value: float | None, stderr: float | None, z: float = Z_95) -> tuple[float, float] | None:
    """Normal-approximation interval value ± z·stderr (95% by default); None when there is no stderr."""
    if value is None or stderr is None:
        return None
    return value - z * stderr, value + z * stderr


def comparison_cells(cmp: Comparison) -> list[dict[str, str]]:
    """The rows of `render_table` as plain strings, formatted exactly as `wb compare` prints them."""
    rows = []
    for r in cmp.rows:
        rows.append({
            "task": r.task, "metric": r.metric, "n": n_cell(r),
            "A": _fmt(r.a, r.stderr_a), "B": _fmt(r.b, r.stderr_b),
            "Δ (B-A)": "-" if r.delta is None else f"{r.delta:+.4f}",
            "B better/worse": "-" if r.improved is None else f"{r.improved}/{r.regressed}",
        })
    return rows


def row_direction(r: Row) -> str:
    """'better', 'worse' or 'same' for B against A, by the metric's direction; '' when it cannot be said."""
    if r.delta is None or r.higher_is_better is None:
        return ""
    if r.delta == 0:
        return "same"
    return "better" if (r.delta > 0) == bool(r.higher_is_better) else "worse"


def sample_tasks(a: Run, b: Run) -> list[str]:
    """Sample files both runs wrote: the suite's task names first, then 'lm-eval.<task>' for harness samples."""
    return sorted((set(a.sample_files()) & set(b.sample_files())) - {"train_log"},
                  key=lambda name: (name.startswith("lm-eval."), name))


def _lm_eval_view(s: dict) -> dict:
    """An lm-eval sample record in the shape of a task sample: id, prompt, output, reference, scores."""
    suffix = "" if s.get("filter") in (None, "none") else f",{s['filter']}"
    if s.get("responses"):
        output = str(s["responses"][0])
        if s.get("filtered") is not None and str(s["filtered"]) != output:
            output += f"\n→ extracted: {s['filtered']}"
    elif s.get("loglikelihoods") and s.get("continuations"):
        lls = s["loglikelihoods"]
        output = str(s["continuations"][max(range(len(lls)), key=lls.__getitem__)])
    else:
        output = ""
    return {"id": f"{s.get('doc_id')}{suffix}", "prompt": s.get("prompt", ""), "output": output,
            "reference": _choice_reference(s), "scores": {f"{k}{suffix}": v for k, v in (s.get("metrics") or {}).items()}}


def _choice_reference(s: dict):
    """A multiple-choice target (the index of the right continuation, e.g. 1) as what the model chose among: the
    continuation (' B') and, where the document lists its choices (MMLU), the choice's text."""
    target, continuations = s.get("target"), s.get("continuations")
    if isinstance(target, bool) or not isinstance(target, int) or not continuations \
            or not 0 <= target < len(continuations):
        return target
    reference = str(continuations[target]).strip()
    choices = (s.get("doc") or {}).get("choices") if isinstance(s.get("doc"), dict) else None
    if isinstance(choices, list) and target < len(choices) and str(choices[target]).strip() != reference:
        reference += f": {choices[target]}"
    return reference


def _sample_view(s: dict) -> dict:
    if "doc_id" in s and "scores" not in s:
        view = _lm_eval_view(s)
    else:
        messages = s.get("messages") or []
        view = {"id": str(s.get("id")), "prompt": messages[-1]["content"] if messages else s.get("prompt", ""),
                "output": s.get("output"), "reference": s.get("reference"), "scores": s.get("scores") or {}}
    view["judge"] = {k: v for k, v in s.items() if any(w in k for w in ("judge", "verdict", "rationale"))}
    return view


def sample_diffs(a: Run, b: Run, task: str) -> list[dict]:
    """Every item of `task` (a sample file name) that both runs scored, A beside B, and per metric whether
    B is better or worse (by the metric's direction; higher is better when the run does not say)."""
    direction = {m["metric"]: m.get("higher_is_better") for m in a.metrics + b.metrics
                 if m["task"] == task.removeprefix("lm-eval.")}
    by_id = {v["id"]: v for v in map(_sample_view, a.samples(task))}
    out = []
    for vb in map(_sample_view, b.samples(task)):
        va = by_id.get(vb["id"])
        if va is None:
            continue
        better, worse = [], []
        for metric, after in vb["scores"].items():
            before = va["scores"].get(metric)
            if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or before == after:
                continue
            up = after > before
            (better if up == (direction.get(metric) is not False) else worse).append(metric)
        out.append({"id": vb["id"], "prompt": va["prompt"], "reference": vb["reference"], "a": va["output"],
                    "b": vb["output"], "scores_a": va["scores"], "scores_b": vb["scores"], "judge_a": va["judge"],
                    "judge_b": vb["judge"], "better": better, "worse": worse})
    return out

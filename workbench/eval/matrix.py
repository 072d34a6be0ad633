"""`wb eval --matrix CKPT`: the checkpoint and everything the store records as made from it (the merged model a
`wb merge` of it wrote, the files a `wb export` of that wrote, at any depth), each evaluated in its own runtime,
and each compared with CKPT by the paired tests the gates use.

Members are read from the store's merge and export runs through views.lineage (the graph the dashboard's Lineage
page draws: a merge run's `output`, an export run's `outputs`, and the `parent` each checkpoint's metadata
records), keyed by weights sha. A member whose path is gone, or whose file there now holds other weights, is
listed as missing; one wb eval cannot run here (EXL2 without CUDA, a LoRA GGUF, the base GGUF shipped beside it)
is listed as skipped with the reason. Nothing here loads a model: this module plans and reports."""

from dataclasses import dataclass, field
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.dashboard import views
from workbench.errors import BadInput
from workbench.store import Run

RUNTIMES = {"peft": "transformers + PEFT", "hf": "transformers", "gguf": "llama.cpp", "awq": "transformers (AWQ)",
            "gptq": "transformers (GPTQ)", "exl2": "exllamav2 (CUDA)"}
RECORDING_COMMANDS = "`wb merge ADAPTER -o DIR` (the merged model) and `wb export CKPT -o DIR` (exported files)"


@dataclass
class Member:
    name: str
    path: str | None
    kind: str | None
    format: str | None
    sha: str | None
    made_by: str = ""  # how it was made from its parent: 'peft merge_and_unload', 'gguf export q8_0', ...
    reference: bool = False  # CKPT itself: every other member is compared with it
    status: str = "planned"  # planned -> ok or error (its eval failed); or missing / skipped before anything runs
    reason: str = ""
    checkpoint: Checkpoint | None = field(default=None, repr=False)
    run_id: str | None = None
    same_answers: dict = field(default_factory=dict)  # task -> {"same": k, "n": n}
    significance: dict = field(default_factory=dict)  # "task/metric" -> the gate's verdict

    @property
    def runtime(self) -> str:
        return RUNTIMES.get(self.format or "", self.format or "?")

    def record(self) -> dict:
        """What the matrix run's manifest and --json keep of a member."""
        return {"name": self.name, "path": self.path, "kind": self.kind, "format": self.format, "sha": self.sha,
                "runtime": self.runtime, "made_by": self.made_by, "reference": self.reference,
                "status": self.status, "reason": self.reason, "run_id": self.run_id,
                "same_answers": self.same_answers, "significance": self.significance}


def find_members(root: Checkpoint, manifests: list[dict]) -> list[Member]:
    """CKPT first, then its descendants in the store's lineage (merged models, then exported files), each
    resolved from disk and marked missing or skipped where it cannot be evaluated."""
    nodes, edges = views.lineage(manifests)
    root_key = views.checkpoint_key(root.to_dict())
    children: dict[str, list[tuple[str, str]]] = {}
    for src, dst, how in edges:
        children.setdefault(src, []).append((dst, how))
    found: dict[str, tuple[int, str]] = {}  # node key -> (depth, how it was made)
    frontier = [root_key]
    depth = 0
    while frontier:
        depth += 1
        nxt = []
        for key in frontier:
            for child, how in children.get(key, []):
                if child != root_key and child not in found:
                    found[child] = (depth, how)
                    nxt.append(child)
        frontier = nxt
    order = sorted(found, key=lambda k: (found[k][0], views.KIND_ORDER.get(nodes[k]["kind"], 9),
                                         nodes[k]["name"] or ""))
    members = [Member(name=root.name, path=str(root.path), kind=root.kind, format=root.format, sha=root.sha,
                      reference=True, status="planned", checkpoint=root)]
    members += [_member(nodes[k], found[k][1]) for k in order]
    held = {m.path for m in members if m.status == "planned"}
    # A path re-exported since (the old file replaced) shows once, as the file now there.
    return [m for m in members if not (m.status == "missing" and m.path in held)]


def _member(node: dict, how: str) -> Member:
    m = Member(name=node["name"] or "?", path=node.get("path"), kind=node.get("kind"), format=node.get("format"),
               sha=node.get("sha"), made_by=how)
    if not m.path or not Path(m.path).exists():
        m.status, m.reason = "missing", f"{m.path or 'no path recorded'}: no longer on disk"
        return m
    from workbench.checkpoints.resolve import resolve_checked

    try:
        ckpt = resolve_checked(m.path)
    except BadInput as exc:
        m.status, m.reason = "skipped", f"cannot be evaluated: {exc}"
        return m
    m.kind, m.format = ckpt.kind, ckpt.format
    if m.sha and ckpt.sha != m.sha:
        m.status = "missing"
        m.reason = f"{m.path} now holds other weights (sha {ckpt.sha[:12]}, recorded {m.sha[:12]})"
        return m
    m.status, m.reason = ("skipped", why) if (why := _cannot_evaluate(ckpt)) else ("planned", "")
    m.checkpoint = ckpt if m.status == "planned" else None
    return m


def _cannot_evaluate(ckpt: Checkpoint) -> str | None:
    """Why `wb eval` cannot evaluate this member here, or None."""
    if ckpt.format == "exl2":
        from workbench.export.exl2 import cuda_problem

        return cuda_problem() or "wb eval has no EXL2 generation path yet (exllamav2 runs only in export checks)"
    if ckpt.format == "gguf" and ckpt.kind == "adapter":
        return "a LoRA GGUF (served on its base GGUF): wb eval evaluates whole-model files; the merged GGUF is the member"
    if (ckpt.parent or {}).get("role") == "adapter base":
        return "the base model as GGUF (shipped beside a LoRA GGUF), not made from this checkpoint's weights"
    return None


def refuse_options(given: dict[str, object]) -> None:
    """--matrix compares each member with CKPT itself: baseline, gate and tracking options do not combine."""
    clash = [name for name, value in given.items() if value not in (None, False)]
    if clash:
        raise BadInput(f"--matrix does not combine with {', '.join(clash)}: each member is compared with CKPT "
                       "itself; gate one file with `wb eval FILE --baseline RUN --gates FILE`")


def check_members(root: Checkpoint, members: list[Member], store_root: Path) -> None:
    """A one-line error when nothing beyond CKPT is recorded, or nothing of it is left to evaluate."""
    others = [m for m in members if not m.reference]
    if not others:
        raise BadInput(f"--matrix {root.path}: the store {store_root} records nothing made from it; "
                       f"{RECORDING_COMMANDS} record a matrix's members")
    if not any(m.status == "planned" for m in others):
        listed = "; ".join(f"{m.name}: {m.status}, {m.reason}" for m in others)
        raise BadInput(f"--matrix {root.path}: nothing made from it is left to evaluate ({listed})")


def same_answers(a: Run, b: Run) -> dict[str, dict]:
    """Per task: items whose output string in B equals A's, of the items both runs answered."""
    from workbench.compare.runs import paired_samples

    return {task: {"same": sum(p["a"] == p["b"] for p in pairs), "n": len(pairs)}
            for task, pairs in paired_samples(a, b, None).items()}


def compare_member(reference: Run, member: Member, run: Run):
    """The comparison `wb compare REFERENCE MEMBER` prints, with the gates' verdicts and same-answer counts."""
    from workbench.compare.runs import compare_runs

    comparison = compare_runs(reference, run)
    verdicts = views.significance_verdicts(reference, run, comparison) or {}
    member.significance = {f"{t}/{m}": v for (t, m), v in verdicts.items()}
    member.same_answers = same_answers(reference, run)
    return comparison


def matrix_table(title: str, members: list[Member], runs: dict[str, Run], comparisons: dict[str, object]):
    """One table: per member its runtime and run, and per metric its value, the paired delta against CKPT
    (formatted as `wb compare` prints it), the gate's significance verdict and the same-answer count."""
    from rich.table import Table

    from workbench.compare.runs import _fmt, comparison_cells

    table = Table(title=title, show_lines=False)
    for col in ("member", "runtime", "run", "task", "metric", "n", "value", "Δ vs CKPT", "better/worse",
                "significance", "same answer"):
        table.add_column(col, justify="right" if col in ("n", "value", "Δ vs CKPT", "better/worse") else "left",
                         overflow="fold")
    for m in members:
        label = f"{m.name} (CKPT)" if m.reference else m.name
        if m.status != "ok":
            table.add_row(label, m.runtime, "-", f"{m.status}: {m.reason}", *[""] * 7, end_section=True)
            continue
        run = runs[m.run_id]
        if m.reference:
            rows = [(x["task"], x["metric"], str(x.get("n", "")), _fmt(x.get("value"), x.get("stderr")), "-", "-",
                     "-") for x in run.metrics]
        else:
            cells = comparison_cells(comparisons[m.run_id])
            rows = [(c["task"], c["metric"], c["n"], c["B"], c["Δ (B-A)"], c["B better/worse"],
                     m.significance.get(f"{c['task']}/{c['metric']}", "-")) for c in cells if c["B"] != "-"]
        shown: set[str] = set()
        for i, (task, metric, n, value, delta, paired, verdict) in enumerate(rows):
            same = m.same_answers.get(task)
            cell = f"{same['same']}/{same['n']}" if same and task not in shown and not m.reference else ""
            shown.add(task)
            table.add_row(label if i == 0 else "", m.runtime if i == 0 else "", m.run_id if i == 0 else "", task,
                          metric, n, value, delta, paired, verdict, cell, end_section=i == len(rows) - 1)
    return table

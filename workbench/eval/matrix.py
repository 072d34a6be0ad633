"""`wb eval --matrix CKPT`: the checkpoint and everything the store records as made from it (the merged model a
`wb merge` of it wrote, the files a `wb export` of that wrote, at any depth), each evaluated in its own runtime,
and each compared with CKPT by the paired tests the gates use.

Members are read from the store's merge and export runs through store/lineage.py (the graph the dashboard's Lineage
page draws: a merge run's `output`, an export run's `outputs`, and the `parent` each checkpoint's metadata
records), keyed by weights sha. A member whose path is gone, or whose file there now holds other weights, is
listed as missing; one wb eval cannot run here (EXL2 without CUDA, a LoRA GGUF, the base GGUF shipped beside it)
is listed as skipped with the reason. Each member is a normal eval run in its own runtime, and the matrix a run of
kind 'matrix' (`evaluate_matrix`)."""

from dataclasses import dataclass, field
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.gate.verdicts import significance_verdicts
from workbench.store import Run
from workbench.store.lineage import KIND_ORDER, checkpoint_key, lineage

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
    reused: bool = False  # run_id is an identical run recorded before (workbench.eval.reuse), not evaluated again
    same_answers: dict = field(default_factory=dict)  # task -> {"same": k, "n": n}
    significance: dict = field(default_factory=dict)  # "task/metric" -> the gate's verdict
    exit_code: int = 0  # a failed member's: what `wb eval --matrix` exits with

    @property
    def runtime(self) -> str:
        """The runtime it is evaluated in, as the matrix table names it."""
        if self.format == "exl2":
            return "exllamav2 (CUDA)"
        if not self.format:
            return "?"
        from workbench.runtimes import runtime_for

        label = runtime_for(Checkpoint(path=Path("."), name="", kind="", format=self.format)).label
        detail = {"peft": "PEFT", "awq": "AWQ", "gptq": "GPTQ"}.get(self.format)
        return f"{label} + {detail}" if self.format == "peft" else f"{label} ({detail})" if detail else label

    def record(self) -> dict:
        """What the matrix run's manifest and --json keep of a member."""
        return {"name": self.name, "path": self.path, "kind": self.kind, "format": self.format, "sha": self.sha,
                "runtime": self.runtime, "made_by": self.made_by, "reference": self.reference,
                "status": self.status, "reason": self.reason, "run_id": self.run_id, "reused": self.reused,
                "same_answers": self.same_answers, "significance": self.significance}


def find_members(root: Checkpoint, manifests: list[dict]) -> list[Member]:
    """CKPT first, then its descendants in the store's lineage (merged models, then exported files), each
    resolved from disk and marked missing or skipped where it cannot be evaluated."""
    nodes, edges = lineage(manifests)
    root_key = checkpoint_key(root.to_dict())
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
    order = sorted(found, key=lambda k: (found[k][0], KIND_ORDER.get(nodes[k]["kind"], 9),
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
    verdicts = significance_verdicts(reference, run, comparison)
    member.significance = {f"{t}/{m}": v for (t, m), v in verdicts.items()}
    member.same_answers = same_answers(reference, run)
    return comparison


# Columns shown only with --wide: the member's runtime and the paired better/worse counts (the significance
# column carries their verdict).
WIDE_ONLY = ("runtime", "better/worse")


def short_ids(ids: list[str]) -> dict[str, str]:
    """Each run id as its shortest '-'-separated suffix that no other id in `ids` ends with (the random tail,
    usually): a table's run column needs no date when its runs are told apart without one."""
    shown = {}
    for run_id in ids:
        parts = run_id.split("-")
        for k in range(1, len(parts) + 1):
            suffix = "-".join(parts[-k:])
            if not any(o != run_id and (o == suffix or o.endswith("-" + suffix)) for o in ids):
                break
        shown[run_id] = suffix
    return shown


def matrix_table(title: str, members: list[Member], runs: dict[str, Run], comparisons: dict[str, object], *,
                 wide: bool = False):
    """One table: per member its runtime and run, and per metric its value, the paired delta against CKPT
    (formatted as `wb compare` prints it), the gate's significance verdict and the same-answer count. Unless
    wide, the columns in WIDE_ONLY are left out and run ids shortened (short_ids); a reused run is marked."""
    from rich.table import Table

    from workbench.compare.runs import _fmt, comparison_cells
    from workbench.system.console import plain

    columns = ("member", "runtime", "run", "task", "metric", "n", "value", "Δ vs CKPT", "better/worse",
               "significance", "same answer")
    keep = [c for c in columns if wide or c not in WIDE_ONLY]
    table = Table(title=plain(title), show_lines=False)
    for col in keep:
        table.add_column(col, justify="right" if col in ("n", "value", "Δ vs CKPT", "better/worse") else "left",
                         overflow="fold", no_wrap=col in ("run", "n", "value"))
    run_ids = [m.run_id for m in members if m.run_id]
    shown_id = {i: i for i in run_ids} if wide else short_ids(run_ids)

    def add_row(cells: dict, end_section: bool = False) -> None:
        table.add_row(*[cells.get(c, "") for c in keep], end_section=end_section)

    for m in members:
        label = plain(f"{m.name} (CKPT)" if m.reference else m.name)
        if m.status != "ok":
            add_row({"member": label, "runtime": m.runtime, "run": "-", "task": plain(f"{m.status}: {m.reason}")},
                    end_section=True)
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
            run_cell = shown_id[m.run_id] + (" (reused)" if m.reused else "")
            first = {"member": label, "runtime": m.runtime, "run": run_cell} if i == 0 else {}
            add_row(first | {"task": plain(task), "metric": plain(metric), "n": n, "value": value,
                             "Δ vs CKPT": delta, "better/worse": paired, "significance": verdict, "same answer": cell},
                    end_section=i == len(rows) - 1)
    return table


@dataclass
class MatrixResult:
    run: Run  # the matrix run
    checkpoint: Checkpoint
    suite: str
    members: list[Member]
    runs: dict[str, Run]  # run id -> each evaluated member's run
    comparisons: dict[str, object]  # run id -> the comparison with CKPT's run
    store_root: Path

    def to_dict(self) -> dict:
        """What `wb eval --matrix --json` prints."""
        return {"run_id": self.run.run_id, "checkpoint": self.checkpoint.to_dict(), "suite": self.suite,
                "members": [m.record() | ({"metrics": self.runs[m.run_id].metrics} if m.run_id else {})
                            | ({"comparison": self.comparisons[m.run_id].to_dict()}
                               if m.run_id in self.comparisons else {}) for m in self.members]}

    def failure(self):
        """The error the matrix ends with when members failed (as a sweep with failed units: the highest code),
        or None."""
        failed = [m for m in self.members if m.status == "error"]
        if not failed:
            return None
        from workbench.errors import WorkbenchError

        evaluated = [m for m in self.members if m.status in ("ok", "error")]
        return WorkbenchError.with_exit_code(f"{len(failed)} of {len(evaluated)} matrix members failed: "
                                             + "; ".join(f"{m.name}: {m.reason}" for m in failed),
                                             max(m.exit_code for m in failed))


def evaluate_matrix(checkpoint: str, suite: str | None = None, *, progress: bool = True, reuse: bool = True,
                    **options) -> MatrixResult:
    """CKPT, its merged model(s) and their exported files, each evaluated in its own runtime and compared with
    CKPT. Everything given is checked first (eval.pipeline.prepare_eval); then the members are found and
    planned, and evaluated one by one. A member whose eval fails is listed with its error and the others go on
    (`result.failure()`); CKPT failing ends the matrix. reuse: a member the store holds an identical finished eval
    run of (workbench.eval.reuse) is not evaluated again; that run is its row, and stderr says so."""
    from workbench.eval.pipeline import prepare_eval
    from workbench.eval.reuse import find_identical, identity
    from workbench.eval.runner import EvalOptions, run_suite
    from workbench.runtimes import check_runtime, open_runtime
    from workbench.system.console import info, library_stdout_to_stderr
    from workbench.system.environment import versions
    from workbench.system.progress import bars

    request = prepare_eval(checkpoint, suite, **options)
    root, loaded, st = request.checkpoint, request.suite, request.store
    members = find_members(root, st.list_runs())
    check_members(root, members, st.root)
    planned = [m for m in members if m.status == "planned"]
    for m in planned:  # a member its runtime cannot run with these settings fails before any model loads
        check_runtime(m.checkpoint, request.runtime_options)
    plans = {m.path: request.plans(prepared=m.reference) for m in planned}
    if loaded.config.gates:
        info(f"suite {loaded.config.name}: its gates are not applied with --matrix")
    manifest = {"command": request.command, "checkpoint": root.to_dict(), "suite": loaded.config.name,
                "suite_path": str(loaded.path), "suite_sha": loaded.sha, "limit": request.limit,
                "versions": versions(), "members": [m.record() for m in members]}
    runs, comparisons = {}, {}
    recorded = st.list_runs("eval") if reuse else []
    with st.open_run("matrix", manifest) as matrix:
        for i, m in enumerate(planned, 1):
            same = identity(m.checkpoint, loaded, limit=request.limit, run_options=request.run_options,
                            plans=plans[m.path])
            earlier = find_identical(recorded, same)
            if earlier is not None:
                info(f"matrix {i}/{len(planned)}: {m.name}: reusing run {earlier}, an identical eval (same weights, "
                     "suite, items, settings and versions; --no-reuse evaluates again)")
                m.status, m.run_id, m.reused, runs[earlier] = "ok", earlier, True, st.load(earlier)
                if not m.reference:
                    comparisons[earlier] = compare_member(runs[planned[0].run_id], m, runs[earlier])
                matrix.manifest["members"] = [x.record() for x in members]
                continue
            info(f"matrix {i}/{len(planned)}: {m.name} ({m.kind}, {m.format}) under {m.runtime}")
            try:
                with open_runtime(m.checkpoint, request.runtime_options) as runtime, bars(enabled=progress) as bar, \
                        library_stdout_to_stderr():
                    run = run_suite(runtime, loaded, st,
                                    EvalOptions(data_dir=request.mirror, limit=request.limit, command=request.command,
                                                lineage={"matrix_run": matrix.run_id}, identity=same),
                                    harness_plans=plans[m.path], progress=bar)
            except Exception as exc:  # noqa: BLE001  (a member's failure is its row; Ctrl-C still stops all)
                _member_failed(m, exc)
            else:
                m.status, m.run_id, runs[run.run_id] = "ok", run.run_id, run
                if not m.reference:
                    comparisons[run.run_id] = compare_member(runs[planned[0].run_id], m, run)
            matrix.manifest["members"] = [x.record() for x in members]  # kept as far as it got, should one fail
    return MatrixResult(matrix, root, loaded.config.name, members, runs, comparisons, st.root)


def _member_failed(m: Member, exc: Exception) -> None:
    """Marks the member as failed with its one-line reason and exit code. CKPT failing ends the matrix."""
    from workbench.errors import WorkbenchError
    from workbench.system.console import err
    from workbench.system.failures import reported

    reason, code = reported(exc)
    if m.reference:
        raise WorkbenchError.with_exit_code(f"--matrix: {m.name} (CKPT) failed, so there is nothing to compare "
                                            f"the other members with: {reason}", code) from exc
    m.status, m.reason, m.exit_code = "error", reason, code
    err.print(f"matrix member {m.name} failed: {reason}", markup=False, soft_wrap=True)

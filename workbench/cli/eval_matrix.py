"""`wb eval --matrix CKPT --suite S`: CKPT, its merged model(s) and their exported files, each a normal eval run in
its own runtime, and one table of paired deltas against CKPT; the matrix is recorded as a run of kind 'matrix'."""

from workbench.cli.options import command_line
from workbench.cli.output import emit_json, out
from workbench.system.console import err, info, library_stdout_to_stderr


def eval_matrix(root, loaded, specs, prepared, st, *, mirror, limit, run_opts: dict, json_out: bool) -> None:
    """Everything the user gave is checked by the caller; here the members are found and planned (a member's
    harness settings that its runtime cannot run fail before any model loads), then evaluated one by one. A
    member whose eval fails is listed with its error and the others go on; the command then exits non-zero."""
    from workbench.eval.matrix import check_members, compare_member, find_members, matrix_table
    from workbench.eval.runner import EvalOptions, harness_plan, run_suite
    from workbench.system.environment import versions
    from workbench.system.progress import bars

    members = find_members(root, st.list_runs())
    check_members(root, members, st.root)
    planned = [m for m in members if m.status == "planned"]
    plans = {m.path: [harness_plan(spec, m.checkpoint, mirror, limit, run_opts, prep if m.reference else None)
                      for spec, prep in zip(specs, prepared)] for m in planned}
    if loaded.config.gates:
        info(f"suite {loaded.config.name}: its gates are not applied with --matrix")
    manifest = {"command": command_line(), "checkpoint": root.to_dict(), "suite": loaded.config.name,
                "suite_path": str(loaded.path), "suite_sha": loaded.sha, "limit": limit, "versions": versions(),
                "members": [m.record() for m in members]}
    runs, comparisons, codes = {}, {}, []
    with st.open_run("matrix", manifest) as matrix:
        for i, m in enumerate(planned, 1):
            info(f"matrix {i}/{len(planned)}: {m.name} ({m.kind}, {m.format}) under {m.runtime}")
            try:
                with bars() as progress, library_stdout_to_stderr():
                    run = run_suite(m.checkpoint, loaded, st,
                                    EvalOptions(data_dir=mirror, limit=limit, command=command_line(),
                                                lineage={"matrix_run": matrix.run_id}),
                                    harness_plans=plans[m.path], progress=progress)
            except Exception as exc:  # noqa: BLE001  (a member's failure is its row; Ctrl-C still stops all)
                codes.append(_member_failed(m, exc))
            else:
                m.status, m.run_id, runs[run.run_id] = "ok", run.run_id, run
                if not m.reference:
                    comparisons[run.run_id] = compare_member(runs[planned[0].run_id], m, run)
            matrix.manifest["members"] = [x.record() for x in members]  # kept as far as it got, should one fail
    payload = {"run_id": matrix.run_id, "checkpoint": root.to_dict(), "suite": loaded.config.name,
               "members": [m.record() | ({"metrics": runs[m.run_id].metrics} if m.run_id else {})
                           | ({"comparison": comparisons[m.run_id].to_dict()} if m.run_id in comparisons else {})
                           for m in members]}
    if json_out:
        emit_json(payload)
    else:
        out.print(matrix_table(f"matrix {matrix.run_id}: {root.name} on suite {loaded.config.name}", members, runs,
                               comparisons))
        differ = {m.name: c.setting_differences for m in members if (c := comparisons.get(m.run_id))
                  and c.setting_differences}
        for name, diffs in differ.items():
            info(f"[yellow]{name}: settings differ from CKPT's run:[/] {'; '.join(diffs)}")
        info(f"matrix {matrix.run_id} and its {len(runs)} eval runs recorded in {st.root}")
    if codes:
        raise _failed(members, max(codes))


def _member_failed(m, exc: Exception) -> int:
    """Marks the member as failed with its one-line reason; its exit code. CKPT failing ends the matrix."""
    from workbench.errors import WorkbenchError
    from workbench.system.failures import reported

    reason, code = reported(exc)
    if m.reference:
        raise WorkbenchError.with_exit_code(f"--matrix: {m.name} (CKPT) failed, so there is nothing to compare "
                                            f"the other members with: {reason}", code) from exc
    m.status, m.reason = "error", reason
    err.print(f"matrix member {m.name} failed: {reason}", markup=False, soft_wrap=True)
    return code


def _failed(members, code: int):
    """The error the matrix ends with when members failed, as a sweep with failed units: the highest code."""
    from workbench.errors import WorkbenchError

    failed = [m for m in members if m.status == "error"]
    evaluated = [m for m in members if m.status in ("ok", "error")]
    return WorkbenchError.with_exit_code(f"{len(failed)} of {len(evaluated)} matrix members failed: "
                                         + "; ".join(f"{m.name}: {m.reason}" for m in failed), code)

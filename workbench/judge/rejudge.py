"""`wb judge`: grade a recorded run's answers again (another judge, a new rubric) or pairwise against another
run, without generating anything. The result is a new run of kind "judge" that points at its source.

    run = rejudge("latest", baseline=OTHER_RUN, judge_url=URL, judge_model=M, judge_key_env="JUDGE_KEY")
"""

from pathlib import Path

from workbench.config import JUDGE_SCORERS, JudgeSpec
from workbench.errors import BadInput
from workbench.eval.suites import LoadedSuite
from workbench.store import Run, Store
from workbench.system.environment import versions


def judge_overrides(spec: JudgeSpec, **changes) -> JudgeSpec:
    """The suite's judge settings with the options the user gave (None = keep)."""
    update = {k: v for k, v in changes.items() if v is not None}
    return JudgeSpec.model_validate({**spec.model_dump(), **update}) if update else spec


def judge_run(store: Store, source: Run, suite: LoadedSuite, *, baseline: Run | None = None, command: str = "",
              progress=None) -> Run:
    from workbench.eval.runner import record_judge_task
    from workbench.judge.session import JudgeSession

    tasks = [t for t in suite.config.tasks if any(s.type in JUDGE_SCORERS for s in t.scorers)]
    if not tasks:
        raise BadInput(f"suite '{suite.config.name}' ({suite.path}): no 'judge' or 'judge_pairwise' scorer")
    recorded = {t.name: source.samples(t.name) for t in tasks}
    for name, rows in recorded.items():
        if not rows:
            raise BadInput(f"run {source.run_id} has no samples for task '{name}' of suite '{suite.config.name}'")
    manifest = {"command": command, "source_run": source.run_id, "baseline_run": baseline.run_id if baseline else None,
                "checkpoint": source.manifest.get("checkpoint"), "suite": suite.config.name,
                "suite_path": str(suite.path), "suite_sha": suite.sha, "config": suite.config.model_dump(),
                "versions": versions()}
    with store.open_run("judge", manifest) as run, JudgeSession(suite.config.judge) as judge:
        run.manifest["judge"] = {"tasks": {}}
        for task in tasks:
            samples = [{"id": s["id"], "messages": s["messages"], "output": s["output"], "reference": s.get("reference"),
                        "scores": {}} for s in recorded[task.name]]
            items = [{"id": s["id"], "messages": s["messages"], "reference": s["reference"]} for s in samples]
            ids = {s["id"] for s in samples}
            gold = [g for g in suite.gold.get(task.name, []) if g["id"] in ids]
            record_judge_task(judge, task, samples, items, run, progress, gold=gold or None, baseline=baseline)
            run.write_samples(task.name, samples)
        run.manifest["judge"].update(judge.summary())
    return run


def rejudge(run_ref: str, *, baseline: str | None = None, suite: str | None = None, judge_url: str | None = None,
            judge_model: str | None = None, judge_key_env: str | None = None, evals_dir: str | None = None,
            store: str | Path | None = None, command: str = "workbench.judge.rejudge", progress: bool = True) -> Run:
    """Grade eval run `run_ref` (id, prefix or 'latest') with the judge scorers of its suite (or `suite`), the
    judge overridden by the options given; pairwise against `baseline` (another run of the suite). Everything is
    checked before the judge starts. Returns the new 'judge' run."""
    from workbench.eval.suites import load_suite
    from workbench.judge.reliability import summary_lines
    from workbench.judge.session import check_judge
    from workbench.system.console import err, info
    from workbench.system.progress import bars

    st = Store.open(store)
    source = st.resolve(run_ref)
    base_run = st.resolve(baseline) if baseline else None
    for option, run in (("RUN", source), ("--baseline", base_run)):
        if run is not None and run.manifest.get("kind") not in ("eval", "judge"):
            raise BadInput(f"{option} {run.run_id} is a {run.manifest.get('kind')} run; wb judge grades the answers "
                           "of an eval run")
    loaded = load_suite(suite or source.manifest.get("suite_path") or source.manifest.get("suite", ""),
                        evals_dir=evals_dir)
    loaded.config.judge = judge_overrides(loaded.config.judge, base_url=judge_url, model=judge_model,
                                          api_key_env=judge_key_env)
    check_judge(loaded.config.judge)
    info(f"judging run {source.run_id}" + (f" against {base_run.run_id}" if base_run else ""))
    with bars(enabled=progress) as bar:
        run = judge_run(st, source, loaded, baseline=base_run, command=command, progress=bar)
    for line in summary_lines(run.manifest.get("judge")):
        err.print(line, soft_wrap=True, markup=False)
    return run

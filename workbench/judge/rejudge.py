"""`wb judge`: grade a recorded run's answers again (another judge, a new rubric) or pairwise against another
run, without generating anything. The result is a new run of kind "judge" that points at its source."""

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

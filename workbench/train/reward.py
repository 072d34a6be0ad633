"""GRPO's reward: one scorer of a suite task, called through the code `wb eval` scores that task with, so the
reward a model is trained on and the metric it is evaluated on cannot drift apart."""

from pathlib import Path

from workbench.config import JUDGE_SCORERS, RewardSpec, ScorerSpec
from workbench.errors import BadInput

# Scorers that judge the output alone; every other one compares it with the row's reference answer.
REFERENCE_FREE = {"json_valid", "json_schema", "regex"}


def load_reward_scorer(spec: RewardSpec, where: Path) -> tuple[ScorerSpec, dict]:
    """The scorer the recipe names and its provenance, or a BadInput saying which part does not exist."""
    from workbench.eval.suites import load_suite

    try:
        suite = load_suite(spec.suite, limit=1)
    except BadInput as exc:
        raise BadInput(f"{where}: reward.suite: {exc}") from None
    tasks = {t.name: t for t in suite.config.tasks}
    if spec.task is None and len(tasks) != 1:
        raise BadInput(f"{where}: reward.task: suite '{spec.suite}' has tasks {', '.join(tasks) or 'none'}; name one")
    task = tasks.get(spec.task) if spec.task else next(iter(tasks.values()))
    if task is None:
        raise BadInput(f"{where}: reward.task: suite '{spec.suite}' has no task '{spec.task}' "
                       f"(it has {', '.join(tasks) or 'none'})")
    scorers = {s.label: s for s in task.scorers if s.type not in JUDGE_SCORERS}
    if spec.scorer is None and len(scorers) != 1:
        raise BadInput(f"{where}: reward.scorer: task '{task.name}' has scorers {', '.join(scorers)}; name one")
    scorer = scorers.get(spec.scorer) if spec.scorer else next(iter(scorers.values()))
    if scorer is None:
        judged = " (judge scorers cannot be rewards: they need an endpoint)" if any(
            s.label == spec.scorer for s in task.scorers) else ""
        raise BadInput(f"{where}: reward.scorer: task '{task.name}' has no scorer '{spec.scorer}'{judged} "
                       f"(it has {', '.join(scorers) or 'none'})")
    if scorer.type == "tool_call":
        raise BadInput(f"{where}: reward.scorer: '{scorer.label}' is a tool_call scorer: it judges calls against "
                       "each item's tools, which GRPO's reward is not given; it cannot be a reward")
    provenance = {"suite": suite.config.name, "suite_path": str(suite.path), "suite_sha": suite.sha,
                  "task": task.name, "scorer": scorer.label}
    return scorer, provenance


def check_references(scorer: ScorerSpec, trl_rows: list[dict], data_path: Path, lines: list[int]) -> None:
    if scorer.type in REFERENCE_FREE:
        return
    for row, line in zip(trl_rows, lines):
        if row.get("reference") is None:
            raise BadInput(f"{data_path}:{line}: reference: missing (the reward scorer '{scorer.label}' compares "
                           "each completion with its row's reference)")


def reward_function(scorer: ScorerSpec):
    """A TRL reward function: one score per completion, from workbench.eval.scorers.score (a python scorer's
    `reward` value, else its first one). A python scorer that raises or returns no score stops training with a
    BadInput naming it: a reward cannot be left out the way an eval sample's score is."""
    from workbench.eval.scorers import score

    def one(completion, ref) -> float:
        try:
            return score(scorer, _text(completion), ref)
        except Exception as exc:
            if scorer.type != "python":
                raise
            raise BadInput(f"reward scorer '{scorer.label}' ({scorer.function}) failed on a completion: "
                           f"{type(exc).__name__}: {exc}") from None

    def reward(prompts, completions, reference=None, **_):
        references = reference if reference is not None else [None] * len(completions)
        return [one(c, ref) for c, ref in zip(completions, references)]

    reward.__name__ = f"wb_{scorer.label}"
    return reward


def _text(completion) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role") == "assistant")

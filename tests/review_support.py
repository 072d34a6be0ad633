"""Two eval runs of the judge-demo suite (its 12 items, the suite's own config with its judge rubric), as `wb eval`
records them, for the Review page's tests: base answers vs adapter answers, judge grades on both, and the adapter's
judge_pairwise verdicts against the base (as `wb eval --baseline` records them). One answer carries HTML and
script, which every page must show as text."""

from workbench.eval.suites import load_suite
from workbench.judge.grading import combine_orders
from workbench.store import Store

HOSTILE = "<script>window.__wb_pwned = 1</script><b>bold?</b> <img src=x onerror=\"window.__wb_pwned = 2\">"


def _answers(name: str, items: list[dict]) -> list[str]:
    if name == "base":
        return [f"I think it is because of {it['id']}." for it in items]
    return [it["reference"] if i != 3 else f"{HOSTILE} {it['reference']}" for i, it in enumerate(items)]


def _pairwise_record(baseline_run: str, winner: str) -> dict:
    """The record judge_task writes for one item: both orders (the run shown first, then the baseline), each
    naming `winner`, combined as wb combines them."""
    orders = [{"a": first, "said": {first: "A", "tie": "tie"}.get(winner, "B"), "winner": winner, "rationale": "seeded"}
              for first in ("run", "baseline")]
    return combine_orders(orders, baseline_run)


def seed_review_store(store: Store) -> tuple[str, str]:
    """Run ids (A: the base's run, B: the adapter's, B judged pairwise against A)."""
    suite = load_suite("judge-demo")
    task = suite.config.tasks[0]
    items = suite.items[task.name]
    ids = {}
    for name in ("base", "adapter"):
        manifest = {"checkpoint": {"name": name, "kind": "base" if name == "base" else "adapter", "sha": name * 8},
                    "suite": suite.config.name, "suite_sha": suite.sha, "config": suite.config.model_dump(),
                    "limit": None}
        outputs = _answers(name, items)
        with store.open_run("eval", manifest) as run:
            samples = []
            for i, (it, out) in enumerate(zip(items, outputs)):
                grade = 2 if name == "base" else 4 + i % 2
                judge = {"judge": {"score": grade, "normalized": (grade - 1) / 4, "rationale": "seeded"}}
                if name == "adapter":
                    judge["judge_pairwise"] = {**_pairwise_record(ids["base"], ("run", "tie", "baseline")[i % 3]),
                                               "baseline_output": _answers("base", items)[i]}
                samples.append({"id": it["id"], "messages": it["messages"], "output": out,
                                "reference": it["reference"], "scores": {"judge": (grade - 1) / 4}, "judge": judge})
            run.write_samples(task.name, samples)
            run.add_metric(task.name, "judge", sum(s["scores"]["judge"] for s in samples) / len(samples),
                           n=len(samples), source="task")
        ids[name] = run.run_id
    return ids["base"], ids["adapter"]

"""What a reviewer is shown: the items of a blind pairwise review (two eval runs of one suite) or of a rubric review
(one run on its task's judge rubric), and where a reviewer resumes. No Streamlit here; the dashboard's Review page
shows these rows.

An item never carries another reviewer's labels; its judge verdict is kept apart (`judge`) and the page shows it
only once this reviewer has labelled the item (`reviewed`).
"""

from workbench.review.labels import append_label, check_item, check_pair, latest, make_label, select, sides
from workbench.store import Run, Store

JUDGE_PREFERRED = {"win": "B", "loss": "A", "tie": "tie"}  # a judge_pairwise verdict is B's (the run's) vs its baseline


def review_suites(manifests: list[dict]) -> dict[str, list[dict]]:
    """Finished eval runs grouped by suite, newest first, for the suites with at least two (a pair to review)."""
    by_suite: dict[str, list[dict]] = {}
    for m in manifests:
        if m["kind"] == "eval" and m["status"] == "ok" and m.get("suite"):
            by_suite.setdefault(m["suite"], []).append(m)
    return {suite: runs for suite, runs in by_suite.items() if len(runs) >= 2}


def suite_tasks(runs: list[Run]) -> list[str]:
    """The suite's own tasks (not lm-eval's) every run wrote samples for, in the suite's order."""
    tasks = [t["name"] for t in (runs[0].manifest.get("config") or {}).get("tasks") or []]
    have = set.intersection(*(set(r.sample_files()) for r in runs))
    return [t for t in tasks if t in have]


def rubric_scorers(manifest: dict, task: str) -> list[dict]:
    """The task's judge (rubric) scorers as the run recorded its suite: [{label, rubric, scale}]."""
    for t in (manifest.get("config") or {}).get("tasks") or []:
        if t["name"] == task:
            return [{"label": s.get("name") or s["type"], "rubric": s["rubric"], "scale": list(s["scale"])}
                    for s in t.get("scorers") or [] if s["type"] == "judge"]
    return []


def prompt_text(sample: dict) -> str:
    """The conversation the model answered, as plain text: one turn per paragraph, the role first when there is
    more than the user's one turn."""
    messages = sample.get("messages") or []
    if not messages:
        return str(sample.get("prompt") or "")
    if len(messages) == 1:
        return str(messages[0].get("content") or "")
    return "\n\n".join(f"[{m.get('role')}]\n{m.get('content') or ''}" for m in messages)


def pairwise_items(a: Run, b: Run, task: str, seed: int) -> list[dict]:
    """The items both runs answered, in A's order: the prompt, and the two answers left/right in the order
    labels.sides draws for the item (`shown`: the run ids left, right). `judge`: B's judge_pairwise verdicts
    against A (where B was evaluated with A as its baseline) in a label's terms: 'A', 'B', 'tie' or 'error'."""
    runs = [a.run_id, b.run_id]
    answers = {run.run_id: {str(s.get("id")): s for s in run.samples(task)} for run in (a, b)}
    items = []
    for item, sa in answers[a.run_id].items():
        sb = answers[b.run_id].get(item)
        if sb is None:
            continue
        shown = sides(seed, item, runs)
        judge = {label: JUDGE_PREFERRED.get(rec.get("verdict"), "error")
                 for label, rec in (sb.get("judge") or {}).items()
                 if isinstance(rec, dict) and rec.get("baseline_run") == a.run_id}
        items.append({"item": item, "prompt": prompt_text(sa), "reference": sa.get("reference"), "shown": shown,
                      "answers": [str(answers[r][item].get("output") or "") for r in shown], "judge": judge})
    return items


def rubric_items(run: Run, task: str, label: str) -> list[dict]:
    """The run's items of `task`: prompt, reference and answer; `judge`: the judge scorer `label`'s grade."""
    return [{"item": str(s.get("id")), "prompt": prompt_text(s), "reference": s.get("reference"),
             "answer": str(s.get("output") or ""), "judge": (s.get("judge") or {}).get(label)}
            for s in run.samples(task)]


def reviewed(labels: list[dict], *, reviewer: str, kind: str, runs: list[str], task: str) -> dict[str, dict]:
    """This reviewer's own latest label per item of this review (no one else's)."""
    mine = select(labels, kind=kind, runs=runs, task=task, reviewer=reviewer.strip())
    return {lb["item"]: lb for lb in latest(mine)}


def resume_at(items: list[dict], done: dict[str, dict]) -> int | None:
    """The index of the first item this reviewer has not labelled; None when all are."""
    return next((i for i, it in enumerate(items) if it["item"] not in done), None)


def label_pair(store: Store, *, reviewer: str, a: Run, b: Run, task: str, item: dict, choice: str, seed: int,
               note: str = "") -> dict:
    """Checks and appends a reviewer's pairwise label of `item` (a pairwise_items row) in the store."""
    check_pair(a, b)
    for run in (a, b):
        check_item(run, task, item["item"])
    record = make_label(reviewer=reviewer, kind="pairwise", suite=a.manifest.get("suite"), task=task,
                        item=item["item"], runs=[a.run_id, b.run_id], shown=item["shown"], choice=choice,
                        note=note, seed=seed)
    return append_label(store, record)


def label_rubric(store: Store, *, reviewer: str, run: Run, task: str, item: str, score: int, scale: list[int],
                 note: str = "") -> dict:
    """Checks and appends a reviewer's rubric grade of the run's answer to `item` in the store."""
    check_item(run, task, item)
    record = make_label(reviewer=reviewer, kind="rubric", suite=run.manifest.get("suite"), task=task, item=item,
                        runs=[run.run_id], score=score, scale=scale, note=note)
    return append_label(store, record)


def human_verdicts(labels: list[dict], run_a: str, run_b: str, task: str) -> dict[str, dict[str, list[str]]]:
    """Per item, every reviewer's latest label about these runs, as text for the Compare page beside the judge's:
    'pairwise' (who preferred A, B, tie or both bad), 'A' and 'B' (rubric grades of each run's answer)."""
    out: dict[str, dict[str, list[str]]] = {}
    wanted = {("pairwise", (run_a, run_b)): "pairwise", ("rubric", (run_a,)): "A", ("rubric", (run_b,)): "B"}
    for lb in latest(select(labels, task=task)):
        where = wanted.get((lb["kind"], tuple(lb["runs"])))
        if where is None:
            continue
        said = lb["preferred"] if lb["kind"] == "pairwise" else f"{lb['score']} of {lb['scale'][1]}"
        out.setdefault(lb["item"], {}).setdefault(where, []).append(f"{lb['reviewer']}: {said}")
    return out

"""The gold file a review makes: people's majority labels, in the format the judge's reliability report reads.

Rubric labels of one run (`wb review export RUN`) become the `gold:` file of a suite task (suites._load_gold):
one row `{id, answer, score}` per item, `score` the reviewers' majority grade of the run's `answer`, plus `votes`
(grade -> reviewers) and `reviewers`. Ties are kept: when the top grades tie (3 and 4, one reviewer each) the item
gets one row per tied grade, so the judge's kappa against the gold file counts it as agreeing with one person and
disagreeing with the other, as the people did.

Pairwise labels of two runs (`wb review export A B`) become one row per item and kept verdict:
`{id, kind: "pairwise", run_a, run_b, answer_a, answer_b, preferred, votes, reviewers}`, `preferred` in
A|B|tie|both_bad (the majority; one row per tied verdict, as above).
"""

from collections import Counter, defaultdict
from pathlib import Path

from workbench.errors import BadInput
from workbench.review.labels import check_item
from workbench.review.stats import kept_labels, review_labels
from workbench.store.files import strict_json, write_text_atomic
from workbench.store.runs import Run, Store
from workbench.system.output_paths import check_new_file


def gold_rows(store: Store, runs: list[Run], task: str | None = None) -> list[dict]:
    """The gold rows of the labels of `runs` (one: rubric; two: pairwise [A, B]); BadInput when there are none."""
    labels = review_labels(store, runs, task)
    if not labels:
        what = "pairwise labels of runs " + " and ".join(r.run_id for r in runs) if len(runs) == 2 \
            else f"rubric labels of run {runs[0].run_id}"
        raise BadInput(f"no {what}{f' for task {task!r}' if task else ''} in {store.root}: nothing to export")
    pairwise = len(runs) == 2
    field = "preferred" if pairwise else "score"
    grouped = defaultdict(list)
    for lb in labels:
        grouped[(lb["task"], lb["item"])].append(lb[field])
    rows = []
    for (name, item), values in sorted(grouped.items()):
        votes = {str(k): v for k, v in sorted(Counter(values).items(), key=lambda kv: str(kv[0]))}
        answers = [check_item(run, name, item)["output"] for run in runs]
        for kept in kept_labels(values):
            if pairwise:
                rows.append({"id": item, "task": name, "kind": "pairwise", "run_a": runs[0].run_id,
                             "run_b": runs[1].run_id, "answer_a": answers[0], "answer_b": answers[1],
                             "preferred": kept, "votes": votes, "reviewers": len(values)})
            else:
                rows.append({"id": item, "task": name, "answer": answers[0], "score": kept, "votes": votes,
                             "reviewers": len(values)})
    return rows


def export_gold(store: Store, runs: list[Run], output: Path, task: str | None = None) -> list[dict]:
    """Writes gold_rows to `output` (JSONL, atomically); returns them."""
    output = Path(output)
    rows = gold_rows(store, runs, task)
    check_new_file(output, "-o")
    write_text_atomic(output, "".join(strict_json(row, ensure_ascii=False) + "\n" for row in rows))
    return rows

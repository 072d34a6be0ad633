import pytest

from workbench.compare.runs import compare_runs, paired_samples
from workbench.errors import BadInput
from workbench.store import Store


def _eval_run(store, name, scores, limit=None):
    with store.open_run("eval", {"checkpoint": {"name": name}, "suite": "s", "limit": limit}) as run:
        run.write_samples("t", [{"id": str(i), "messages": [{"role": "user", "content": "q"}], "output": f"{name}{i}",
                                 "reference": "r", "scores": {"exact": s}} for i, s in enumerate(scores)])
        run.add_metric("t", "exact", sum(scores) / len(scores), n=len(scores), source="task")
    return store.load(run.run_id)


def test_deltas_and_paired_counts(tmp_path):
    store = Store(tmp_path)
    a = _eval_run(store, "base", [0, 0, 1, 1])
    b = _eval_run(store, "tuned", [1, 1, 1, 0])
    cmp = compare_runs(a, b)
    (row,) = cmp.rows
    assert row.a == 0.5 and row.b == 0.75 and row.delta == pytest.approx(0.25)
    assert (row.improved, row.regressed) == (2, 1)
    assert cmp.setting_differences == []
    pairs = paired_samples(a, b, 2)["t"]
    assert [(p["a"], p["b"]) for p in pairs] == [("base0", "tuned0"), ("base1", "tuned1")]


def test_paired_counts_follow_the_metric_direction(tmp_path):
    """For a lower-is-better metric (tool_call.wrong), B going from 0 to 1 on an item is worse, not better."""
    store = Store(tmp_path)
    runs = []
    for name, wrong in (("base", [0, 0, 1]), ("tuned", [1, 1, 0])):
        with store.open_run("eval", {"checkpoint": {"name": name}, "suite": "s"}) as run:
            run.write_samples("t", [{"id": str(i), "output": "", "reference": "r", "scores": {"wrong": w}}
                                    for i, w in enumerate(wrong)])
            run.add_metric("t", "wrong", sum(wrong) / 3, n=3, source="task", higher_is_better=False)
        runs.append(store.load(run.run_id))
    (row,) = compare_runs(*runs).rows
    assert (row.improved, row.regressed) == (1, 2)


def test_settings_that_differ_are_named(tmp_path):
    store = Store(tmp_path)
    a = _eval_run(store, "base", [1, 0], limit=None)
    b = _eval_run(store, "tuned", [1, 1], limit=2)
    assert compare_runs(a, b).setting_differences == ["limit: None vs 2"]


def test_the_api_resolves_run_ids_refuses_differing_settings_and_pairs_samples(tmp_path):
    import workbench

    store = Store(tmp_path)
    a = _eval_run(store, "base", [0, 1, 1])
    b = _eval_run(store, "tuned", [1, 1, 0], limit=3)
    with pytest.raises(BadInput, match=r"not comparable: settings differ: limit: None vs 3 \(pass --allow-diff"):
        workbench.compare(a.run_id, b.run_id, store=tmp_path)
    cmp = workbench.compare(a.run_id[-6:], "latest", store=tmp_path, samples=2, allow_differences=True)
    assert (cmp.run_a, cmp.run_b, cmp.setting_differences) == (a.run_id, b.run_id, ["limit: None vs 3"])
    assert [(p["a"], p["b"]) for p in cmp.samples["t"]] == [("base0", "tuned0"), ("base1", "tuned1")]
    assert cmp.to_dict()["samples"] == cmp.samples
    plain = workbench.compare(a, a)  # Run objects need no store
    assert plain.samples is None and "samples" not in plain.to_dict() and plain.rows[0].delta == 0

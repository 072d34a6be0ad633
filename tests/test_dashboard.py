"""Every dashboard page under Streamlit's AppTest, on an empty store and on a seeded one.

The seeded store holds what the CLI records: a train run (loss log), eval runs of the base, the adapter and a
GGUF (task samples and lm-eval metrics), a merge and an export (verification metrics per file).
"""

import re
import sys

import pytest

from workbench.compare.runs import compare_runs, comparison_cells, sample_diffs
from workbench.dashboard import views
from workbench.store import Store
from workbench.store.lineage import during_training
from workbench.store.lineage import lineage as store_lineage
from workbench.system.content import content_dir

pytest.importorskip("streamlit", reason="needs the dashboard extra (pip install 'ckpt-workbench[dashboard]')")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(content_dir("dashboards") / "app.py")

BASE = {"name": "default", "kind": "base", "format": "hf", "base": None, "sha": "b" * 64, "path": "/m/default",
        "parent": {"format": "gguf", "path": "/m/SmolLM2.Q4_1.gguf", "sha": "0" * 64,
                   "how": "transformers gguf dequantize"}}
ADAPTER = {"name": "contacts-lora", "kind": "adapter", "format": "peft", "base": "default", "sha": "a" * 64,
           "path": "/m/adapter", "parent": {"base": "default", "base_path": "/m/default", "base_sha": "b" * 64,
                                            "method": "sft-lora"}}
MERGED = {"name": "contacts-lora-merged", "kind": "merged", "format": "hf", "base": "default", "sha": "c" * 64,
          "path": "/m/merged", "parent": {"adapter": "contacts-lora", "adapter_path": "/m/adapter",
                                          "adapter_sha": "a" * 64, "base": "default", "base_sha": "b" * 64,
                                          "how": "peft merge_and_unload"}}
GGUF = {"name": "merged-Q4_K_M", "kind": "quantized", "format": "gguf", "base": "default", "sha": "d" * 64,
        "path": "/m/gguf/merged-Q4_K_M.gguf", "parent": {"name": "contacts-lora-merged", "sha": "c" * 64,
                                                          "kind": "merged", "quant": "q4_k_m"}}
SCORES = {  # per checkpoint: (exact, json_valid) for items 0..5
    "default": [(0, 0), (0, 1), (1, 1), (0, 0), (1, 1), (0, 1)],
    "contacts-lora": [(1, 1), (1, 1), (0, 1), (1, 1), (1, 1), (0, 0)],
    "merged-Q4_K_M": [(1, 1), (1, 1), (0, 1), (1, 1), (0, 1), (0, 0)],
}


def _eval(store: Store, ckpt: dict, suite: str = "contacts") -> str:
    scores = SCORES.get(ckpt["name"], SCORES["contacts-lora"])
    manifest = {"command": f"wb eval {ckpt['path']} --suite {suite}", "checkpoint": ckpt, "suite": suite,
                "suite_sha": "s" * 64, "limit": None, "seed": 0, "versions": {"python": "3.11", "torch": "2.4"},
                "timings": {"contacts": 12.5, "harness[0]": 3.25}}
    with store.open_run("eval", manifest) as run:
        run.write_samples("contacts", [
            {"id": f"item-{i}", "messages": [{"role": "user", "content": f"contact {i} as JSON"}],
             "output": f'{{"name": "{ckpt["name"]} {i}"}}', "reference": f'{{"name": "p{i}"}}',
             "scores": {"exact": float(e), "json_valid": float(j)}} for i, (e, j) in enumerate(scores)])
        for k, label in enumerate(("exact", "json_valid")):
            values = [s[k] for s in scores]
            run.add_metric("contacts", label, sum(values) / len(values), stderr=0.2 if k == 0 else 0.15, n=len(values),
                           source="task")
        run.add_metric("mmlu_management", "acc", 0.3 if ckpt["kind"] == "base" else 0.2, stderr=0.15, n=10,
                       source="lm-eval")
    return run.run_id


def seed(store: Store) -> dict:
    ids = {}
    with store.open_run("train", {"command": "wb train contacts-lora -o /m/adapter", "seed": 0,
                                  "config": {"name": "contacts-lora"}, "versions": {"trl": "1.0"}}) as run:
        run.manifest["checkpoint"] = ADAPTER
        run.manifest["timings"] = {"train": 120.0}
        log = [{"step": s, "loss": 2.0 / s, "learning_rate": 3e-4 * (1 - s / 50), "elapsed_s": 3.0 * s}
               for s in range(5, 45, 5)]
        run.write_samples("train_log", log)
        run.add_metric("train", "final_loss", log[-1]["loss"], n=len(log), higher_is_better=False)
    ids["train"] = run.run_id
    ids["base"] = _eval(store, BASE)
    ids["adapter"] = _eval(store, ADAPTER)
    with store.open_run("merge", {"command": "wb merge /m/adapter -o /m/merged", "checkpoint": ADAPTER}) as run:
        run.manifest["output"] = MERGED
        run.add_metric("merge_check", "max_abs_logit_diff", 1e-5, n=64, higher_is_better=False)
    ids["merge"] = run.run_id
    with store.open_run("export", {"command": "wb export /m/merged -f gguf", "format": "gguf",
                                   "quants": ["q4_k_m", "q8_0"]}) as run:
        run.manifest["checkpoint"] = {k: MERGED[k] for k in ("name", "path", "kind", "sha")} | {"format": "hf"}
        run.manifest["outputs"] = [
            {"path": "/m/gguf/merged-Q4_K_M.gguf", "quant": "q4_k_m", "size_bytes": 100 * 2**20, "sha": "d" * 64},
            {"path": "/m/gguf/merged-Q8_0.gguf", "quant": "q8_0", "size_bytes": 150 * 2**20, "sha": "e" * 64},
            {"path": "/m/gguf/merged-Q2_K.gguf", "quant": "q2_k", "size_bytes": 120 * 2**20, "sha": "f" * 64}]
        run.manifest["timings"] = {"export": 30.0, "verify": 10.0}
        for name, quant, size, kl, top1, same in (("merged-Q4_K_M.gguf", "q4_k_m", 100, 0.05, 0.93, 0.75),
                                                  ("merged-Q8_0.gguf", "q8_0", 150, 0.002, 0.99, 1.0),
                                                  ("merged-Q2_K.gguf", "q2_k", 120, 0.30, 0.80, 0.5)):
            run.add_metric(name, "size_bytes", size * 2**20, higher_is_better=False, quant=quant)
            run.add_metric(name, "mean_kl", kl, higher_is_better=False, quant=quant)
            run.add_metric(name, "top1_agreement", top1, quant=quant)
            run.add_metric(name, "same_greedy_answer", same, n=4, quant=quant)
    ids["export"] = run.run_id
    ids["merged_eval"] = _eval(store, MERGED)  # scores as the adapter's
    ids["gguf"] = _eval(store, GGUF)
    return ids


def plain(table):
    """An st.table's frame without the Markdown escapes the page adds."""
    unescape = lambda text: re.sub(r"\\(.)", r"\1", text)  # noqa: E731
    return table.rename(columns=unescape).map(unescape)


@pytest.fixture(scope="module")
def seeded(module_tmp):
    store = Store(module_tmp("dash") / "store")
    return store, seed(store)


@pytest.fixture
def app(seeded, monkeypatch):
    monkeypatch.setenv("WB_STORE", str(seeded[0].root))

    def open_page(page: str, **query) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page(page)
        at.query_params.update(query)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_page


@pytest.mark.parametrize("page, command", [
    ("app_pages/leaderboard.py", "wb eval"), ("app_pages/compare.py", "wb eval"), ("app_pages/exports.py", "wb export"),
    ("app_pages/lineage.py", "wb train"), ("app_pages/runs.py", "wb eval"), ("app_pages/training.py", "wb train"),
    ("app_pages/sweeps.py", "wb sweep"), ("app_pages/review.py", "wb eval")])
def test_empty_store_says_which_command_records_the_data(tmp_path, monkeypatch, page, command):
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception
    assert at.info and at.info[0].value.startswith("No ") and command in at.info[0].value
    assert not (tmp_path / "store").exists()  # looking creates nothing


def test_leaderboard_sorts_and_filters(app, seeded):
    at = app("app_pages/leaderboard.py")
    table = at.dataframe[0].value
    assert list(table["checkpoint"]) == ["contacts-lora · aaaaaaa", "contacts-lora-merged · ccccccc",
                                         "merged-Q4_K_M · ddddddd", "default · bbbbbbb"]
    assert list(table["contacts / exact"]) == pytest.approx([4 / 6, 4 / 6, 3 / 6, 2 / 6])
    assert table["contacts / exact ±95%"].iloc[0] == pytest.approx(1.959963984540054 * 0.2)
    assert len(at.get("plotly_chart")) == 1
    sort_by = next(s for s in at.selectbox if s.label == "Sort by")
    sort_by.set_value("mmlu_management / acc").run()
    assert list(at.dataframe[0].value["checkpoint"])[0] == "default · bbbbbbb"
    next(t for t in at.toggle if t.label == "Best first").set_value(False).run()
    assert list(at.dataframe[0].value["checkpoint"])[-1] == "default · bbbbbbb"
    next(s for s in at.selectbox if s.label == "Base model").set_value("default").run()
    assert len(at.dataframe[0].value) == 4  # all descend from 'default'


def test_compare_shows_the_cli_numbers(app, seeded):
    from workbench.gate.verdicts import significance_verdicts

    store, ids = seeded
    at = app("app_pages/compare.py", a=ids["base"], b=ids["adapter"])
    a, b = store.load(ids["base"]), store.load(ids["adapter"])
    comparison = compare_runs(a, b)
    shown = plain(at.table[0].value)
    assert shown.drop(columns=["verdict"]).to_dict("records") == comparison_cells(comparison)
    assert shown.loc[2, "B better/worse"] == "-"  # lm-eval metric: no paired counts
    verdicts = significance_verdicts(a, b, comparison)  # the gates' own tests, as `wb eval --matrix` shows them
    assert list(shown["verdict"]) == [verdicts[(r.task, r.metric)] for r in comparison.rows]
    assert at.metric[0].value == "2" and at.metric[1].value == "1"  # exact + json_valid up, mmlu down
    assert len(at.get("plotly_chart")) == 1


def test_compare_drill_down_filters_to_regressions(app, seeded):
    store, ids = seeded
    at = app("app_pages/compare.py", a=ids["base"], b=ids["adapter"])
    diffs = sample_diffs(store.load(ids["base"]), store.load(ids["adapter"]), "contacts")
    worse = [d["id"] for d in diffs if d["worse"]]
    assert worse == ["item-2", "item-5"]
    assert len(at.dataframe[0].value) == 6
    next(t for t in at.toggle if t.label == "Regressions only").set_value(True).run()
    assert list(at.dataframe[0].value["id"]) == worse
    next(s for s in at.selectbox if s.label == "Judge regressions by").set_value("json_valid").run()
    assert list(at.dataframe[0].value["id"]) == ["item-5"]
    assert "B better on 2, worse on 1 (json\\_valid)" in " ".join(c.value for c in at.caption)  # Markdown source: as text
    item = next(s for s in at.selectbox if s.label == "Item")
    assert item.options == ["item-5 — worse: json_valid"]
    shown = " ".join(t.value for t in at.text)
    diff = next(d for d in diffs if d["id"] == "item-5")
    assert diff["prompt"] in shown and str(diff["a"]) in shown and str(diff["b"]) in shown


def test_compare_shows_the_gates_significance_verdicts(app, seeded):
    import streamlit as st

    from workbench.gate import rules as gate
    st.cache_data.clear()
    store, ids = seeded
    at = app("app_pages/compare.py", a=ids["base"], b=ids["adapter"])
    verdicts = list(plain(at.table[0].value)["verdict"])
    # exact: 3 items up, 1 down -> McNemar exact p = 0.625; json_valid: 2 up, 1 down
    assert verdicts[0] == f"no significant difference (mcnemar-exact p={gate.mcnemar(3, 1)[1]:.3g})"
    assert verdicts[1] == f"no significant difference (mcnemar-exact p={gate.mcnemar(2, 1)[1]:.3g})"
    assert verdicts[2].startswith("no significant difference (normal-unpaired p=")  # lm-eval: no samples here


def test_compare_checkpoint_mode_uses_each_checkpoints_latest_run(app, seeded):
    store, ids = seeded
    at = app("app_pages/compare.py")
    at.radio[0].set_value("two checkpoints (latest run of each)").run()
    assert not at.exception
    labels = {s.label: s.value for s in at.selectbox}
    assert labels["Suite"] == "contacts"
    newest = store.list_runs(kind="eval")[0]  # runs made in the same second: the index decides the order
    assert labels["Checkpoint B (candidate)"] == views.checkpoint_label(newest["checkpoint"])
    assert at.query_params["b"] == newest["run_id"]
    assert labels["Checkpoint A (baseline)"] != labels["Checkpoint B (candidate)"]


def test_exports_page_plots_size_against_quality(app, seeded):
    at = app("app_pages/exports.py")
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # size vs quality, KL per quant
    parity = at.dataframe[0].value
    assert list(parity["quant"]) == ["q4_k_m", "q2_k", "q8_0"]  # by size
    assert list(parity["size (MiB)"]) == [100, 120, 150]
    assert at.table  # the GGUF's eval against its source's eval
    front = views.pareto_front(parity.rename(columns={"mean KL (nats/token)": "kl"}).to_dict("records"),
                               "size (MiB)", "kl", False)
    assert [p["quant"] for p in front] == ["q4_k_m", "q8_0"]  # q2_k is bigger and worse than q4_k_m


def test_lineage_joins_base_adapter_merged_exports(app, seeded):
    at = app("app_pages/lineage.py")
    table = at.dataframe[0].value.set_index("checkpoint")
    assert table.loc["contacts-lora", "made from"] == "default"
    assert table.loc["contacts-lora-merged", "made from"] == "contacts-lora"
    assert table.loc["merged-Q4_K_M", "made from"] == "contacts-lora-merged"
    assert table.loc["merged-Q8_0", "made from"] == "contacts-lora-merged"
    assert table.loc["default", "made from"] == "SmolLM2.Q4_1.gguf"
    assert len(at.get("plotly_chart")) == 1


def test_run_detail_shows_manifest_versions_timings(app, seeded):
    store, ids = seeded
    at = app("app_pages/runs.py", run=ids["export"])
    assert at.selectbox[0].value == ids["export"]
    assert len(at.dataframe[0].value) == len(ids)  # the run list
    assert at.metric[0].value == "ok"
    assert at.code[0].value == "wb export /m/merged -f gguf"
    assert len(at.get("plotly_chart")) == 1  # timings
    versions = [d.value for d in at.dataframe if "package" in d.value.columns]
    assert versions == []  # the export run recorded none; the eval run does:
    at.selectbox[0].set_value(ids["base"]).run()
    versions = next(d.value for d in at.dataframe if "package" in d.value.columns)
    assert dict(zip(versions["package"], versions["version"])) == {"python": "3.11", "torch": "2.4"}


def test_training_curves(app, seeded):
    at = app("app_pages/training.py")
    assert len(at.get("plotly_chart")) == 2  # loss, learning rate
    assert list(at.dataframe[0].value["step"]) == list(range(5, 45, 5))


@pytest.fixture(scope="module")
def big_store(module_tmp):
    """200 synthetic runs from the benchmark's generator (the shapes the CLI records)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "bench_dashboard.py"
    spec = importlib.util.spec_from_file_location("bench_dashboard", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.make_store(module_tmp("big") / "store", 200)


@pytest.mark.parametrize("page", ["leaderboard", "compare", "exports", "lineage", "runs", "training"])
def test_every_page_works_on_hundreds_of_runs(big_store, monkeypatch, page):
    monkeypatch.setenv("WB_STORE", str(big_store.root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [i.value for i in at.info if i.value.startswith("No ")]  # every page has data to show
    if page == "runs":  # 200 runs: paged, 50 a page
        assert len(at.dataframe[0].value) == 50 and at.number_input[0].max == 4
    if page == "lineage":  # too many checkpoints for one graph: it opens on one family
        assert at.selectbox[0].value != "all"
    if page == "leaderboard":  # it opens on the newest suite; across all suites the chart keeps 30 of the rows
        assert at.selectbox[0].value == views.latest_suite(big_store.list_runs())
        at.selectbox[0].set_value("all suites").run()
        assert "first 30 of" in " ".join(c.value for c in at.caption)


def test_sample_diffs_agree_with_compare_paired_counts(seeded):
    store, ids = seeded
    a, b = store.load(ids["base"]), store.load(ids["adapter"])
    diffs = sample_diffs(a, b, "contacts")
    for row in compare_runs(a, b).rows:
        if row.improved is not None:
            assert row.improved == sum(row.metric in d["better"] for d in diffs)
            assert row.regressed == sum(row.metric in d["worse"] for d in diffs)


def test_sample_diffs_pair_lm_eval_records_by_document_and_filter(tmp_path):
    store = Store(tmp_path / "store")
    ids = []
    for name, answers in (("base", [0.0, 1.0]), ("tuned", [1.0, 0.0])):
        with store.open_run("eval", {"checkpoint": {"name": name}, "suite": "s"}) as run:
            run.write_samples("lm-eval.gsm8k", [
                {"doc_id": i, "filter": "strict-match", "prompt": f"Q{i}", "target": "18",
                 "responses": [f"{name} answer {i}"], "filtered": f"{i}", "metrics": {"exact_match": v}}
                for i, v in enumerate(answers)])
            run.add_metric("gsm8k", "exact_match,strict-match", sum(answers) / 2, n=2, higher_is_better=True,
                           source="lm-eval")
        ids.append(run.run_id)
    diffs = sample_diffs(store.load(ids[0]), store.load(ids[1]), "lm-eval.gsm8k")
    assert [(d["id"], d["better"], d["worse"]) for d in diffs] == [
        ("0,strict-match", ["exact_match,strict-match"], []), ("1,strict-match", [], ["exact_match,strict-match"])]
    assert diffs[0]["prompt"] == "Q0" and diffs[0]["b"] == "tuned answer 0\n→ extracted: 0"


def test_wb_dashboard_serves_on_loopback(tmp_path):
    import os
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "store").mkdir()  # an empty store (a --store that does not exist is refused)
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "dashboard", "--port", str(port),
                             "--store", str(tmp_path / "store")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ}, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as resp:
                    assert resp.read().decode().strip() == "ok"
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "dashboard did not come up in 90 s"
                time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def test_training_page_plots_evals_during_training_against_step(tmp_path, monkeypatch):
    """A train run with eval_during_training, as the CLI records it: eval runs linked by lineage (train run +
    step), one of them by a killed run the train run resumed; step 2 was evaluated twice, the later one counts."""
    store = Store(tmp_path / "store")
    with store.open_run("train", {"command": "wb train r.yaml -o /m/a", "config": {"name": "live"}}) as killed:
        pass
    with store.open_run("train", {"command": "wb train r.yaml -o /m/a --resume", "config": {"name": "live"}}) as run:
        run.manifest["checkpoint"] = ADAPTER
        run.manifest["resumed_from"] = {"checkpoint": "/m/a.checkpoints/checkpoint-2", "step": 2,
                                        "train_runs": [killed.run_id]}
        run.write_samples("train_log", [{"step": s, "loss": 3.0 - s / 4, "learning_rate": 1e-4, "elapsed_s": s}
                                        for s in range(1, 7)])
    evals = []
    for step, owner, exact, acc in ((0, killed, 1.0, 0.5), (2, killed, 0.25, 0.5), (2, run, 0.5, 0.45),
                                    (4, run, 0.75, 0.4), (6, run, 0.8, 0.3)):
        lineage = {"train_run": owner.run_id, "step": step, **({"base": True} if step == 0 else {})}
        c = BASE if step == 0 else {**ADAPTER, "name": f"live@step-{step}", "sha": f"{step}" * 64}
        with store.open_run("eval", {"checkpoint": c, "suite": "live", "lineage": lineage}) as e:
            e.add_metric("say", "exact", exact, n=8, source="task")
            e.add_metric("mmlu_abstract_algebra", "acc", acc, stderr=0.1, n=20, source="lm-eval")
        evals.append(e.run_id)
    store.annotate(run, "eval_during_training", {
        "suite": "live", "every_steps": 2, "base_run": evals[0], "runs": [],
        "stopped_early": {"step": 6, "max_steps": 10, "gate": "mmlu_abstract_algebra/acc",
                          "reason": "dropped 0.2000 (0.5000 -> 0.3000), more than max_drop 0.1, and significant"}})
    monkeypatch.setenv("WB_STORE", str(store.root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/training.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 4  # loss, task metrics, regression slice, learning rate
    table = at.dataframe[0].value
    exact = table[table["metric"] == "exact"]
    assert list(exact["step"]) == [0, 2, 4, 6] and list(exact["value"]) == [1.0, 0.5, 0.75, 0.8]
    assert list(table[table["metric"] == "acc"]["kind"].unique()) == ["regression slice (lm-eval)"]
    assert "Stopped early at step 6 of 10" in at.warning[0].value
    # evals during training are the Training page's: not checkpoints on the leaderboard or in the lineage
    assert not any(during_training(m) for m in views.latest_per_checkpoint(store.list_runs()))
    nodes, _ = store_lineage(store.list_runs())
    assert not [n for n in nodes.values() if "@step-" in (n["name"] or "")]


def test_sweeps_page_shows_the_sweeps_leaderboard_and_units(tmp_path, monkeypatch):
    """A sweep as `wb sweep` records it: its units' eval runs, and the sweep run listing them (one failed)."""
    from workbench.sweep.leaderboard import leaderboard

    store = Store(tmp_path / "store")
    units = []
    for name, value in (("ckpt-a", 0.25), ("ckpt-b", 0.75)):
        with store.open_run("eval", {"checkpoint": {**BASE, "name": name}, "suite": "s1",
                                     "sweep": {"unit": f"{name} × s1", "where": "node 1"}}) as e:
            e.add_metric("contacts", "json_valid", value, n=4, source="task")
        units.append({"unit": f"{name} × s1", "checkpoint": name, "suite": "s1", "status": "ok", "run_id": e.run_id,
                      "attempts": 1 if name == "ckpt-a" else 2, "where": "node 1", "seconds": 3.0})
    units.append({"unit": "ckpt-c × s1", "checkpoint": "ckpt-c", "suite": "s1", "status": "failed", "attempts": 1,
                  "error": "config.json: size mismatch", "exit_code": 3})
    with store.open_run("sweep", {"command": "wb sweep s.yaml --ray auto", "units": units,
                                  "executor": {"ray": "auto", "nodes": [{"alive": True}] * 3, "max_retries": 2}}):
        pass
    monkeypatch.setenv("WB_STORE", str(store.root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/sweeps.py").run()
    assert not at.exception, [e.value for e in at.exception]
    board = at.dataframe[0].value
    assert list(board["checkpoint"]) == ["ckpt-b", "ckpt-a", "ckpt-c"]  # best first; the failed one last
    assert list(board["s1 / contacts / json_valid"])[:2] == [0.75, 0.25]
    columns, rows = leaderboard(store, units)  # the numbers `wb sweep` prints
    assert list(board["s1 / contacts / json_valid"])[:2] == [r[columns[0]] for r in rows[:2]]
    shown_units = at.dataframe[1].value
    assert list(shown_units["attempts"]) == [1, 2, 1] and "size mismatch" in shown_units["error"].iloc[2]
    assert "1 of 3 units failed" in at.warning[0].value and "3 nodes" in at.caption[0].value


def test_lineage_links_every_parent_of_a_merge_of_several():
    """A merge of two adapters (PEFT add_weighted_adapter) and a mergekit SLERP of two models, as wb merge records
    them: an edge from each parent, so the Lineage page and `wb eval --matrix` reach the merged model."""
    ad = [{"name": f"ad{i}", "path": f"/m/ad{i}", "sha": f"{i}" * 64, "weight": 0.5} for i in (1, 2)]
    ties = {"name": "ties", "kind": "merged", "format": "hf", "sha": "t" * 64, "path": "/m/ties",
            "parent": {"how": "peft add_weighted_adapter + merge_and_unload", "method": "ties", "adapters": ad,
                       "base": {"name": "default", "path": "/m/default", "sha": "b" * 64}}}
    slerp = {"name": "slerp", "kind": "merged", "format": "hf", "sha": "s" * 64, "path": "/m/slerp",
             "parent": {"how": "mergekit", "merge_method": "slerp",
                        "models": [{"name": "default", "path": "/m/default", "sha": "b" * 64},
                                   {"name": "ties", "path": "/m/ties", "sha": "t" * 64}]}}
    manifests = [{"run_id": "r2", "kind": "merge", "status": "ok", "checkpoint": slerp},
                 {"run_id": "r1", "kind": "merge", "status": "ok", "checkpoint": ties}]
    nodes, edges = store_lineage(manifests)
    assert ("1" * 64, "t" * 64, "peft add_weighted_adapter + merge_and_unload ties") in edges
    assert ("2" * 64, "t" * 64, "peft add_weighted_adapter + merge_and_unload ties") in edges
    assert {(src, dst) for src, dst, how in edges if how == "mergekit slerp"} == {("b" * 64, "s" * 64),
                                                                                 ("t" * 64, "s" * 64)}
    assert nodes["1" * 64]["kind"] == "adapter" and nodes["t" * 64]["name"] == "ties"

"""`wb report RUN [RUN ...] -o FILE` and `wb eval --html FILE`: one self-contained HTML page, rendered in headless
Chromium (Debian's chromium driven by playwright, as tests/test_dashboard_browser.py does): the metrics table, the
per-tag breakdown under its metric, `wb compare`'s numbers with the gates' verdicts, the samples with their
disagreement filter, user text shown as text (a <script> in an output never runs), and no network request.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest
from hostile_support import Workspace, check_case, run_cli

from workbench.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "needs Debian's chromium: apt-get install -y chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parent.parent

# per checkpoint, per item: exact; items 0-2 are tagged seen, 3-5 heldout
EXACT = {"base": [0, 1, 0, 1, 0, 0], "tuned": [1, 1, 0, 1, 1, 0]}
TAGS = ["seen"] * 3 + ["heldout"] * 3
SCRIPT_OUTPUT = "<script>window.__pwned = 1</script>"
NAMES = {"base": "base", "tuned": "tuned <b>bold</b><img src=x onerror=\"window.__pwned=2\">"}


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5


def _seed_run(store: Store, who: str, limit: int | None = None) -> str:
    """An eval run as wb records one, with per-tag rows in the breakdown format (`label[tag=X]`, `breakdown`)."""
    manifest = {"checkpoint": {"name": NAMES[who], "kind": "base" if who == "base" else "adapter", "sha": who * 8},
                "suite": "contacts", "suite_sha": "abc", "limit": limit, "versions": {"python": "3.11"}}
    exact = EXACT[who]
    with store.open_run("eval", manifest) as run:
        run.write_samples("contacts", [
            {"id": f"item-{i}", "messages": [{"role": "user", "content": f"prompt {i}" + (
                "<img src=x onerror=\"window.__pwned=3\">" if i == 1 else "")}],
             "output": SCRIPT_OUTPUT if (who, i) == ("tuned", 0) else f"{who} answer {i}",
             "reference": "</pre></td><script>window.__pwned=4</script>" if i == 2 else f"ref {i}",
             "scores": {"exact": float(e), "json_valid": 1.0}, "tags": [TAGS[i]]}
            for i, e in enumerate(exact)])
        mean, se = _mean_stderr(exact)
        run.add_metric("contacts", "exact", mean, stderr=se, n=6, higher_is_better=True, source="task")
        for tag in ("seen", "heldout"):
            part = [e for e, t in zip(exact, TAGS) if t == tag]
            m, s = _mean_stderr(part)
            run.add_metric("contacts", f"exact[tag={tag}]", m, stderr=s, n=len(part), higher_is_better=True,
                           source="task", breakdown={"key": "tag", "value": tag})
        run.add_metric("contacts", "json_valid", 1.0, stderr=0.0, n=6, higher_is_better=True, source="task")
    return run.run_id


@pytest.fixture
def ws(tmp_path, monkeypatch):
    w = Workspace(tmp_path, monkeypatch)
    yield w
    w.close()


def _browser(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def _playwright():
    try:
        from playwright import sync_api
    except ImportError:  # chromium is here, so this is a broken setup, not a reason to skip
        pytest.fail("chromium is installed but the playwright package is not: pip install playwright")
    return sync_api


def _open(page, path: Path) -> list[str]:
    """Open the report from disk as a CI artifact is opened; returns every URL the page asked for."""
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.locator(".plotly-graph-div .main-svg").first.wait_for()
    return requests


def _rows(table) -> list[list[str]]:
    return [[c.strip() for c in row.locator("td").all_inner_texts()] for row in table.locator("tr").all()[1:]]


def _fmt(mean: float, se: float) -> str:
    return f"{mean:.4f} ± {se:.4f}" if se else f"{mean:.4f}"


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_report_shows_metrics_breakdown_comparison_and_samples_as_text(ws, capsys):
    store = Store(ws.store)
    a, b = _seed_run(store, "base"), _seed_run(store, "tuned")
    out = ws.root / "out"
    out.mkdir()
    res = run_cli(["report", a, b, "-o", out / "report.html"], capsys)
    assert res.code == 0, res.stderr
    assert res.stdout == ""
    cmp = run_cli(["compare", a, b, "--json"], capsys)
    assert cmp.code == 0, cmp.stderr
    rows = json.loads(cmp.stdout)["rows"]
    html = (out / "report.html").read_text()
    assert SCRIPT_OUTPUT not in html and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "<script src=" not in html and "<link" not in html  # nothing fetched: plotly.js is inline

    sync_api = _playwright()
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            requests = _open(page, out / "report.html")
            assert requests == [(out / "report.html").as_uri()], requests
            assert page.evaluate("window.__pwned") is None  # no script or handler from the data ran

            metrics = page.locator("#metrics-table")
            assert metrics.is_visible()
            expected = {who: {name: _fmt(*_mean_stderr([e for e, t in zip(EXACT[who], TAGS) if t in tags]))
                              for name, tags in (("exact", ("seen", "heldout")), ("tag=seen", ("seen",)),
                                                 ("tag=heldout", ("heldout",)))} for who in EXACT}
            # the breakdown rows sit right under their base metric, in the order they were recorded
            assert _rows(metrics) == [
                ["contacts", "exact", "6", expected["base"]["exact"], expected["tuned"]["exact"]],
                ["", "tag=seen", "3", expected["base"]["tag=seen"], expected["tuned"]["tag=seen"]],
                ["", "tag=heldout", "3", expected["base"]["tag=heldout"], expected["tuned"]["tag=heldout"]],
                ["contacts", "json_valid", "6", "1.0000", "1.0000"]]
            header = metrics.locator("th").all_inner_texts()
            assert header[-1] == f"B: {NAMES['tuned']}"  # the name's markup shows as text

            # wb compare's rows, its numbers as it prints them, each with the gate's verdict
            shown = _rows(page.locator(".comparison-table"))
            by_metric = {r[1]: r for r in shown}
            for r in rows:
                cells = by_metric[r["metric"]]
                assert cells[3] == _fmt(r["a"], r["stderr_a"]) and cells[4] == _fmt(r["b"], r["stderr_b"])
                assert cells[5] == f"{r['delta']:+.4f}"
            assert [r[1] for r in shown] == ["exact", "exact[tag=seen]", "exact[tag=heldout]", "json_valid"]
            assert by_metric["exact"][6] == "2/0"
            assert by_metric["exact"][7].startswith("no significant difference (mcnemar-exact p=0.5")

            sample = page.locator("tr.sample", has_text="item-0")
            assert sample.is_visible()
            assert page.get_by_text(SCRIPT_OUTPUT, exact=True).is_visible()
            assert page.get_by_text("</pre></td><script>window.__pwned=4</script>").first.is_visible()
            legend = page.locator(".legendtext").all_text_contents()
            assert f"B · {NAMES['tuned']}" in legend, legend

            samples = page.locator("tr.sample")
            assert samples.count() == 6
            page.locator("#only-disagreements").check()
            visible = [r.locator("td.id").inner_text() for r in samples.all() if r.is_visible()]
            assert visible == ["item-0", "item-4"]  # where the runs' exact scores differ
            page.locator("#only-disagreements").uncheck()
            page.locator("#sample-search").fill("answer 5")
            assert [r.locator("td.id").inner_text() for r in samples.all() if r.is_visible()] == ["item-5"]
            page.locator("#sample-search").fill("")
            page.screenshot(path=str(out / "report.png"), full_page=True)
            assert (out / "report.png").stat().st_size > 10_000
        finally:
            browser.close()


def test_report_of_one_run_with_gates(ws, capsys):
    store = Store(ws.store)
    run = _seed_run(store, "tuned")
    gates = ws.file("gates.yaml", "gates:\n  - {task: contacts, metric: exact, min_value: 0.9}\n")
    res = run_cli(["report", run, "-o", ws.root / "one.html", "--gates", gates], capsys)
    assert res.code == 0, res.stderr
    html = (ws.root / "one.html").read_text()
    assert "gate failed: 1 of 1 gate(s): contacts/exact" in html
    assert "0.6667 &lt; min_value 0.9" in html
    assert 'id="only-disagreements"' not in html  # one run: nothing to disagree with


def test_report_of_three_runs_compares_each_with_the_first(ws, capsys):
    store = Store(ws.store)
    runs = [_seed_run(store, who) for who in ("base", "tuned", "tuned")]
    res = run_cli(["report", *runs, "-o", ws.root / "three.html", "--samples", "1"], capsys)
    assert res.code == 0, res.stderr
    html = (ws.root / "three.html").read_text()
    assert html.count('class="comparison-table"') == 2
    assert html.count('<tr class="sample') == 1  # --samples 1: the first item the runs scored differently
    assert '<td class="id">item-0</td>' in html and html.count('class="text output"') == 3
    assert "6 items, 2 scored differently; 1 shown" in " ".join(html.split())


def _seeded(*who_limits):
    def build(ws, _fixture):
        store = Store(ws.store)
        return [_seed_run(store, who, limit) for who, limit in who_limits]
    return build


CASES = {
    "unknown run": (lambda ws, f: ["report", "nope", "-o", ws.root / "r.html"], 3, ("run 'nope'", "no such run")),
    "unknown second run": (lambda ws, f: ["report", *_seeded(("base", None))(ws, f), "nope2", "-o",
                                          ws.root / "r.html"], 3, ("run 'nope2'",)),
    "-o in a missing folder": (lambda ws, f: ["report", *_seeded(("base", None))(ws, f), "-o",
                                              ws.root / "missing" / "r.html"], 3, ("-o", "no such folder")),
    "-o read-only": (lambda ws, f: ["report", *_seeded(("base", None))(ws, f), "-o", ws.readonly() / "r.html"], 3,
                     ("-o", "cannot write")),
    "-o a folder": (lambda ws, f: ["report", *_seeded(("base", None))(ws, f), "-o", ws.inputs], 3,
                    ("-o", "is a folder")),
    "settings differ": (lambda ws, f: ["report", *_seeded(("base", None), ("tuned", 3))(ws, f), "-o",
                                       ws.root / "r.html"], 3, ("not comparable", "limit", "--allow-differences")),
    "gates on three runs": (lambda ws, f: ["report", *_seeded(("base", None), ("tuned", None), ("base", None))(ws, f),
                                           "--gates", ws.file("g.yaml", "gates: []\n"), "-o", ws.root / "r.html"],
                            3, ("--gates", "3 runs")),
    "gate on a missing metric": (lambda ws, f: ["report", *_seeded(("base", None))(ws, f), "--gates",
                                                ws.file("g.yaml", "gates:\n  - {task: contacts, metric: nope, min_value: 0.5}\n"),
                                                "-o", ws.root / "r.html"], 3, ("gate 'contacts/nope'", "no metric")),
    "eval --html in a missing folder": (lambda ws, f: ["eval", "default", "--suite", ws.suite(), "--html",
                                                       ws.root / "missing" / "r.html"], 3, ("--html", "no such folder")),
    "eval --matrix --html": (lambda ws, f: ["eval", "default", "--suite", ws.suite(), "--matrix", "--html",
                                            ws.root / "r.html"], 3, ("--matrix does not combine with --html",)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_report_refuses(case, ws, request, capsys):
    check_case(case, ws, request, capsys)


def test_eval_html_without_plotly_is_refused_before_any_model_loads(ws, request, capsys, monkeypatch):
    """Without the dashboard extra, `wb eval --html` stops at once (exit 4), not after an hour of evaluation."""
    monkeypatch.setitem(sys.modules, "plotly", None)  # what `import plotly` meets where it is not installed
    monkeypatch.delitem(sys.modules, "plotly.offline", raising=False)
    case = (lambda ws, f: ["eval", "default", "--suite", ws.suite(), "--html", ws.root / "r.html"], 4,
            ("the HTML report needs plotly", "ckpt-workbench[dashboard]"))
    check_case(case, ws, request, capsys)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_eval_html_on_the_default_model_against_a_baseline(store_dir, tmp_path, tiny_model_dir, capsys):
    """`wb eval default --suite contacts --limit 4 --baseline TINY --gates release.yaml --html FILE`: a real run of
    the default model against a baseline (a tiny random Llama), its gates failing: the report is written all the
    same, with the gates' numbers exactly as --gate-json has them."""
    out = tmp_path / "out"
    out.mkdir()
    res = run_cli(["eval", "default", "--suite", "contacts", "--limit", "4", "--no-harness", "--baseline",
                   tiny_model_dir, "--gates", REPO / "evals" / "gates" / "release.yaml", "--gate-json",
                   out / "gate.json", "--html", out / "report.html", "--quiet"], capsys)
    assert res.code == 1, res.stderr  # the default model does not pass the release gates
    gate = json.loads((out / "gate.json").read_text())

    sync_api = _playwright()
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            requests = _open(page, out / "report.html")
            assert requests == [(out / "report.html").as_uri()], requests
            assert page.locator("#gates").inner_text().startswith("Gates: gate failed")
            shown = {r[0]: r for r in _rows(page.locator("#gate-table"))}
            for g in gate["results"]:
                row = shown[g["gate"]]
                assert row[1] == g["status"] and row[2] == f"{g['value']:.4f}"
                assert row[3] == f"{g['baseline_value']:.4f}" and row[4] == f"{g['delta']:+.4f}"
                assert row[7] == ("-" if g["p_value"] is None else f"{g['p_value']:.3g}")
            metrics = page.locator("#metrics-table")
            assert metrics.is_visible()
            assert [r[1] for r in _rows(metrics)] == ["exact", "json_valid", "json_fields"]
            assert metrics.locator("th").all_inner_texts()[-1] == "B: default"
            assert page.locator("tr.sample").count() == 4
            assert page.locator("tr.sample").first.is_visible()
            page.screenshot(path=str(out / "report.png"), full_page=True)
            assert (out / "report.png").stat().st_size > 10_000
        finally:
            browser.close()

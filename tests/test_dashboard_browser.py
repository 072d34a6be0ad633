"""End to end in headless Chromium: `wb dashboard` on a seeded store shows exactly `wb compare --json`'s numbers.

Needs Debian's chromium (apt-get install chromium) and the playwright package (pip install playwright); never
`playwright install`: the test drives the system browser.
"""

import json
import subprocess
import sys

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM, served_dashboard, sync_playwright

from workbench.store import Store

pytestmark = NEEDS_CHROMIUM

# per checkpoint, per item: (exact, json_valid)
SCORES = {"base": [(0, 1), (1, 1), (0, 0), (1, 1), (0, 1)], "tuned": [(1, 1), (0, 1), (1, 1), (1, 1), (1, 0)]}


def _eval_run(store: Store, name: str) -> str:
    scores = SCORES[name]
    manifest = {"checkpoint": {"name": name, "kind": "base" if name == "base" else "adapter", "sha": name * 8},
                "suite": "contacts", "limit": None}
    with store.open_run("eval", manifest) as run:
        run.write_samples("contacts", [
            {"id": f"item-{i}", "messages": [{"role": "user", "content": f"prompt {i}"}], "output": f"{name} says {i}",
             "reference": f"ref {i}", "scores": {"exact": float(e), "json_valid": float(j)}}
            for i, (e, j) in enumerate(scores)])
        for k, label in enumerate(("exact", "json_valid")):
            values = [s[k] for s in scores]
            mean = sum(values) / len(values)
            stderr = (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5
            run.add_metric("contacts", label, mean, stderr=stderr, n=len(values), higher_is_better=True, source="task")
        run.add_metric("gsm8k", "exact_match,strict-match", 0.25 if name == "base" else 0.125, stderr=0.1, n=8,
                       higher_is_better=True, source="lm-eval")
    return run.run_id


def _cells(cli: dict) -> list[list[str]]:
    """`wb compare --json` rows, formatted as the CLI table prints them (4 decimals)."""
    def value(v, se):
        return "-" if v is None else (f"{v:.4f} ± {se:.4f}" if se else f"{v:.4f}")

    return [[r["task"], r["metric"], str(r["n_a"]) if r["n_a"] == r["n_b"] else f"{r['n_a']}/{r['n_b']}",
             value(r["a"], r["stderr_a"]), value(r["b"], r["stderr_b"]),
             "-" if r["delta"] is None else f"{r['delta']:+.4f}",
             "-" if r["improved"] is None else f"{r['improved']}/{r['regressed']}"] for r in cli["rows"]]


@pytest.fixture
def dashboard(tmp_path):
    """A seeded store and `wb dashboard` serving it: (base url, store, run id A, run id B)."""
    store = Store(tmp_path / "store")
    run_a, run_b = _eval_run(store, "base"), _eval_run(store, "tuned")
    with served_dashboard(store.root, tmp_path / "dashboard.log") as url:
        yield url, store, run_a, run_b


def test_compare_view_shows_the_numbers_wb_compare_prints(dashboard):
    sync_api = sync_playwright()
    url, store, run_a, run_b = dashboard
    cli = subprocess.run([sys.executable, "-m", "workbench", "compare", run_a, run_b, "--json", "--store",
                          str(store.root)], capture_output=True, text=True, timeout=120, check=True)
    expected = _cells(json.loads(cli.stdout))

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)  # the leaderboard, then to the compare view through the sidebar as a user would
            page.get_by_role("heading", name="Leaderboard").wait_for()
            page.locator('[data-testid="stSidebarNav"] a', has_text="Compare").click()
            page.get_by_role("heading", name="Compare").wait_for()
            # then A=base, B=tuned by the view's URL (both runs were made in the same second: no default order)
            page.goto(f"{url}/compare?a={run_a}&b={run_b}")
            page.get_by_role("heading", name="Compare").wait_for()
            table = page.locator('[data-testid="stTable"] table').first
            table.wait_for()
            header = [c.strip() for c in table.locator("thead th").all_inner_texts()]
            shown = [[c.strip() for c in row.locator("td").all_inner_texts()]
                     for row in table.locator("tbody tr").all()]
            assert header[:7] == ["task", "metric", "n", "A", "B", "Δ (B-A)", "B better/worse"]
            assert [row[:7] for row in shown] == expected
            if len(header) > 7:  # the gate's verdicts, where workbench.gate is installed
                assert header[7:] == ["verdict"]
                assert all(row[7].startswith(("no significant", "significantly", "not tested")) for row in shown)

            # the drill-down, filtered to regressions: the items where B scored lower on some metric
            page.get_by_text("Regressions only").click()
            worse = [f"item-{i}" for i, (x, y) in enumerate(zip(SCORES["base"], SCORES["tuned"]))
                     if any(b < a for a, b in zip(x, y))]
            picker = page.get_by_role("combobox", name="Item")
            sync_api.expect(picker).to_have_value(f"{worse[0]} — worse: exact")  # the rerun after the toggle drew
            # the item picker lists exactly those, each as "<id> — worse: <metrics>"
            picker.click()
            options = page.get_by_role("option")
            options.first.wait_for()
            assert [t.strip().split(" — ")[0] for t in options.all_inner_texts()] == worse
        finally:
            browser.close()

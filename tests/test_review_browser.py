"""Two reviewers label the same 12 items of two demo runs on the dashboard's Review page, at once, in two browser
contexts of real headless Chromium (one by keyboard shortcuts, one by clicks; one reloads midway and resumes).
Then the store holds exactly their 24 labels, the sides were drawn per item, each page showed the answers on the
sides its labels record, and neither reviewer ever saw the other's labels, nor a judge verdict before their own.

WB_REVIEW_SCREENSHOTS=docs/screenshots also writes review-pairwise.png and review-rubric.png there.
"""

import os
import re
from pathlib import Path

from browser_support import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM, served_dashboard, sync_playwright
from review_support import HOSTILE, seed_review_store

from workbench.review.labels import read_labels
from workbench.store import Store

pytestmark = NEEDS_CHROMIUM
N = 12
BASE_ANSWER = "I think it is because of"  # how every base answer starts (review_support)


class Reviewer:
    """One person at the Review page in their own browser context."""

    def __init__(self, sync_api, browser, url: str, name: str, keys: bool):
        self.sync_api, self.name, self.keys = sync_api, name, keys
        self.page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        self.page.set_default_timeout(60_000)
        self.url = url
        self.seen: list[str] = []  # every page text this reviewer was shown
        self.left: dict[str, str] = {}  # item -> the left answer as shown

    def open(self) -> None:
        self.page.goto(self.url)
        self.wait_ready()

    def wait_ready(self) -> None:
        self.page.get_by_role("heading", name="Review").wait_for()
        self.page.get_by_text("items labelled by you").wait_for()
        self.settled()

    def settled(self) -> None:
        """Waits out the script run: until it ends, the last item's widgets stay in the page beside the new ones."""
        self.page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
        self.sync_api.expect(self.page.locator('[data-stale="true"]')).to_have_count(0)

    def progress(self) -> str:
        return self.page.get_by_text("items labelled by you").inner_text()

    def label(self, k: int, choice: int) -> str:
        """Labels the item on screen (the k-th this reviewer labels) with choice 1-4; returns the item's id."""
        expect = self.sync_api.expect
        expect(self.page.get_by_text(re.compile(rf"^{k} of {N} items labelled by you"))).to_be_visible()
        self.settled()
        caption = self.page.get_by_text("the runs' names are hidden").inner_text()
        item = caption.split("id ", 1)[1].split(" ·", 1)[0].replace("\\", "")
        self.left[item] = self.page.locator(".st-key-answer-left").inner_text()
        self.seen.append(self.page.locator("section.main, [data-testid='stMain']").first.inner_text())
        self.check_judge_hidden(item)
        self.page.get_by_label("Note (optional)").fill(f"{self.name} note {k}")
        if self.keys:
            self.page.get_by_role("heading", name="Review").click()  # focus off the note field: shortcuts apply
            self.page.keyboard.press(str(choice))
        else:
            self.page.get_by_role("button", name=("Left is better", "Right is better", "Tie", "Both bad")[choice - 1],
                                  exact=False).click()
        expect(self.page.get_by_text(re.compile(rf"^{k + 1} of {N} items labelled by you"))).to_be_visible()
        return item

    def check_judge_hidden(self, item: str) -> None:
        """The page lists judge verdicts only for this reviewer's labelled items, never the item on screen."""
        tables = self.page.locator('[data-testid="stTable"] table')
        if tables.count():
            rows = [r.locator("td").first.inner_text().strip() for r in tables.first.locator("tbody tr").all()]
            assert item not in rows


def test_two_reviewers_label_the_same_items_blind(tmp_path):
    sync_api = sync_playwright()
    store = Store(tmp_path / "store")
    run_a, run_b = seed_review_store(store)
    shots = os.environ.get("WB_REVIEW_SCREENSHOTS")
    with served_dashboard(store.root, tmp_path / "dashboard.log") as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            review = f"{url}/review?a={run_a}&b={run_b}&task=explain"
            alice = Reviewer(sync_api, browser, review + "&reviewer=alice", "alice", keys=True)
            bob = Reviewer(sync_api, browser, review + "&reviewer=bob", "bob", keys=False)
            alice.open()
            bob.open()
            labelled = {"alice": [], "bob": []}
            for k in range(N):  # turn by turn: both sessions stay open and label at once
                if k == 6:  # alice reloads midway: the page resumes at her first unlabelled item
                    alice.page.reload()
                    alice.wait_ready()
                    assert alice.progress().startswith(f"6 of {N}")
                labelled["alice"].append(alice.label(k, 1 + k % 4))
                if shots and k == 3:  # the item whose answer carries HTML, as text
                    Path(shots).mkdir(parents=True, exist_ok=True)
                    bob.page.set_viewport_size({"width": 1400, "height": 1500})
                    bob.page.screenshot(path=str(Path(shots) / "review-pairwise.png"), full_page=True)
                labelled["bob"].append(bob.label(k, 1 + (k + 1) % 4))
            for who in (alice, bob):
                who.page.get_by_text(f"You have labelled all {N} items").wait_for()
                assert who.page.evaluate("window.__wb_pwned") is None  # the hostile answer ran nothing
            assert any(HOSTILE in text for text in alice.seen + bob.seen)  # ... and showed as typed
            if shots:
                alice.page.goto(f"{url}/review?reviewer=alice&mode=rubric&run={run_b}&task=explain")
                alice.page.get_by_text("items graded by you").wait_for()
                alice.page.set_viewport_size({"width": 1400, "height": 1500})
                alice.page.screenshot(path=str(Path(shots) / "review-rubric.png"), full_page=True)
        finally:
            browser.close()

    labels = read_labels(store)
    assert labels.torn == 0 and len(labels.labels) == 2 * N
    for who, other in ((alice, bob), (bob, alice)):
        mine = [lb for lb in labels.labels if lb["reviewer"] == who.name]
        assert sorted(lb["item"] for lb in mine) == sorted(labelled[who.name]) and len(set(labelled[who.name])) == N
        assert [lb["note"] for lb in mine] == [f"{who.name} note {k}" for k in range(N)]
        assert [lb["choice"] for lb in mine] == [("left", "right", "tie", "both_bad")[(k + (who is bob)) % 4]
                                                 for k in range(N)]
        for lb in mine:  # the page showed the answers on the sides the label records
            assert lb["runs"] == [run_a, run_b] and lb["seed"] == 0
            assert (BASE_ANSWER in who.left[lb["item"]]) == (lb["shown"][0] == run_a)
        assert not any(f"{other.name} note" in text or other.name in text for text in who.seen)
    orders = {tuple(lb["shown"]) for lb in labels.labels}
    assert orders == {(run_a, run_b), (run_b, run_a)}  # drawn per item: both orders occur
    for item in labelled["alice"]:  # one draw per item: both reviewers saw it the same way
        assert len({tuple(lb["shown"]) for lb in labels.labels if lb["item"] == item}) == 1

"""Dashboard load time per page on a store of N synthetic runs (target: < 2 s per page), and page screenshots.

    python bench/bench_dashboard.py [--runs 500] [--store DIR] [--no-browser]
    python bench/bench_dashboard.py screenshots --store /path/to/store --out docs/screenshots

The synthetic runs are written through the Store API with the shapes `wb train/eval/merge/export` record
(task samples, lm-eval metrics, loss logs, per-file export metrics), so the pages do their real work.
Timings: the page script under Streamlit's AppTest (cold: caches emptied; warm: a rerun), and, where Debian's
chromium and playwright are installed, a real browser from navigation until the script has finished and every
chart has drawn (first visit after the server starts, then a second visit).
"""

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workbench.store import Store  # noqa: E402

APP = REPO / "dashboards" / "app.py"
# url path -> title; the default page (Leaderboard) is served at "/"
PAGES = {"leaderboard": "Leaderboard", "compare": "Compare", "exports": "Exports", "lineage": "Lineage",
         "runs": "Run detail", "training": "Training"}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
BASES = ["smollm2-135m", "qwen2.5-0.5b", "llama-3.2-1b", "gemma-3-1b"]
SUITES = ["contacts", "demo", "json-extract"]
MMLU = ["mmlu_management", "mmlu_philosophy", "mmlu_world_religions", "mmlu_conceptual_physics"]
QUANTS = {"q8_0": 8.5, "q6_k": 6.6, "q5_k_m": 5.7, "q4_k_m": 4.9, "q3_k_m": 3.9, "q2_k": 3.0}  # bits/weight


def _sha(rng: random.Random) -> str:
    return "%064x" % rng.getrandbits(256)


def make_store(root: Path, n_runs: int, seed: int = 0) -> Store:
    """n_runs runs: ~60% evals, 12% trains, 8% merges, 12% exports, 8% failed or unfinished."""
    rng = random.Random(seed)
    store = Store(root)
    bases = [{"name": b, "kind": "base", "format": "hf", "base": None, "sha": _sha(rng), "path": f"/models/{b}"}
             for b in BASES]
    ckpts = list(bases)
    versions = {"python": "3.11.7", "torch": "2.4.1", "transformers": "5.0.0", "peft": "0.17.0", "lm-eval": "0.4.9"}
    plan = (["eval"] * 60 + ["train"] * 12 + ["merge"] * 8 + ["export"] * 12 + ["error"] * 8)
    for i in range(n_runs):
        kind = plan[i % len(plan)]
        if kind == "train" or (kind == "merge" and not any(c["kind"] == "adapter" for c in ckpts)):
            base = rng.choice(bases)
            name = f"{base['name']}-lora-{i}"
            adapter = {"name": name, "kind": "adapter", "format": "peft", "base": base["name"], "sha": _sha(rng),
                       "path": f"/adapters/{name}", "parent": {"base": base["name"], "base_path": base["path"],
                                                               "base_sha": base["sha"], "method": "sft-lora"}}
            with store.open_run("train", {"command": f"wb train {name}.yaml -o /adapters/{name}", "seed": 0,
                                          "config": {"name": name, "lora": {"r": 16}}, "versions": versions}) as run:
                run.manifest["checkpoint"] = adapter
                run.manifest["timings"] = {"train": rng.uniform(60, 600)}
                floor = rng.uniform(0.05, 0.4)
                log = [{"step": s, "loss": floor + 2.0 * 0.9 ** s + rng.uniform(0, 0.05),
                        "learning_rate": 3e-4 * (1 - s / 200), "elapsed_s": 2.5 * s} for s in range(5, 205, 5)]
                run.write_samples("train_log", log)
                run.add_metric("train", "final_loss", log[-1]["loss"], n=len(log), higher_is_better=False)
            ckpts.append(adapter)
        elif kind == "merge":
            adapter = rng.choice([c for c in ckpts if c["kind"] == "adapter"])
            merged = {"name": f"{adapter['name']}-merged", "kind": "merged", "format": "hf", "base": adapter["base"],
                      "sha": _sha(rng), "path": f"/merged/{adapter['name']}",
                      "parent": {"adapter": adapter["name"], "adapter_path": adapter["path"],
                                 "adapter_sha": adapter["sha"], "base": adapter["base"],
                                 "how": "peft merge_and_unload"}}
            with store.open_run("merge", {"command": f"wb merge {adapter['path']} -o {merged['path']}",
                                          "checkpoint": adapter, "versions": versions}) as run:
                run.manifest["output"] = merged
                run.add_metric("merge_check", "max_abs_logit_diff", rng.uniform(1e-6, 1e-4), n=256,
                               higher_is_better=False)
            ckpts.append(merged)
        elif kind == "export":
            source = rng.choice([c for c in ckpts if c["kind"] in ("merged", "base")])
            quants = rng.sample(list(QUANTS), 4)
            params = {"smollm2-135m": 135e6, "qwen2.5-0.5b": 494e6, "llama-3.2-1b": 1.24e9, "gemma-3-1b": 1.0e9}
            n_params = params.get(source.get("base") or source["name"], 1e9)
            with store.open_run("export", {"command": f"wb export {source['path']} -f gguf", "format": "gguf",
                                           "quants": quants, "versions": versions}) as run:
                run.manifest["checkpoint"] = {k: source[k] for k in ("name", "path", "kind", "sha")} | {"format": "hf"}
                outputs = []
                for q in quants:
                    stem = f"{source['name']}-{q.upper()}"
                    size = int(n_params * QUANTS[q] / 8)
                    outputs.append({"path": f"/gguf/{i}/{stem}.gguf", "quant": q, "size_bytes": size, "sha": _sha(rng)})
                    loss = (8.5 - QUANTS[q]) ** 2 / 40
                    run.add_metric(f"{stem}.gguf", "size_bytes", size, higher_is_better=False, quant=q)
                    run.add_metric(f"{stem}.gguf", "mean_kl", loss * rng.uniform(0.8, 1.2), higher_is_better=False,
                                   quant=q)
                    run.add_metric(f"{stem}.gguf", "top1_agreement", 1 - loss * rng.uniform(1, 2), quant=q)
                    run.add_metric(f"{stem}.gguf", "same_greedy_answer", rng.choice([0.5, 0.75, 1.0]), n=4, quant=q)
                    ckpts.append({"name": stem, "kind": "quantized", "format": "gguf", "base": source.get("base"),
                                  "sha": outputs[-1]["sha"], "path": outputs[-1]["path"],
                                  "parent": {"name": source["name"], "sha": source["sha"], "kind": source["kind"],
                                             "quant": q}})
                run.manifest["outputs"] = outputs
                run.manifest["timings"] = {"export": rng.uniform(10, 90), "verify": rng.uniform(5, 30)}
        elif kind == "error":
            try:
                with store.open_run("eval", {"command": "wb eval x --suite contacts", "checkpoint": rng.choice(ckpts),
                                             "suite": "contacts", "versions": versions}):
                    raise RuntimeError("synthetic failure: CUDA out of memory")
            except RuntimeError:
                pass
        else:
            _eval(store, rng.choice(ckpts), rng.choice(SUITES), rng, versions)
    return store


def _eval(store: Store, ckpt: dict, suite: str, rng: random.Random, versions: dict) -> None:
    skill = rng.uniform(0.1, 0.9)
    manifest = {"command": f"wb eval {ckpt['path']} --suite {suite}", "checkpoint": ckpt, "suite": suite,
                "suite_sha": f"{hash(suite) & (2**64 - 1):016x}", "limit": None, "seed": 0, "versions": versions,
                "timings": {"contacts": rng.uniform(20, 90), "harness[0]": rng.uniform(10, 60)}}
    with store.open_run("eval", manifest) as run:
        samples = []
        for k in range(80):
            exact = float(rng.random() < skill)
            samples.append({"id": f"test-{k:04d}", "messages": [{"role": "user", "content": f"Extract contact {k}"}],
                            "output": f'{{"name": "Person {k}"}}', "reference": f'{{"name": "Person {k}"}}',
                            "scores": {"exact": exact, "json_valid": max(exact, float(rng.random() < 0.9))}})
        run.write_samples("contacts", samples)
        for label in ("exact", "json_valid"):
            values = [s["scores"][label] for s in samples]
            mean = sum(values) / len(values)
            run.add_metric("contacts", label, mean, stderr=(mean * (1 - mean) / (len(values) - 1)) ** 0.5,
                           n=len(values), source="task")
        for task in MMLU:
            acc = rng.uniform(0.2, 0.5)
            run.add_metric(task, "acc", acc, stderr=(acc * (1 - acc) / 10) ** 0.5, n=10, source="lm-eval")


# ---- timing ---------------------------------------------------------------------------------------------------

def time_apptest(store: Store) -> dict[str, tuple[float, float]]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["WB_STORE"] = str(store.root)
    out = {}
    for page in PAGES:
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.switch_page(f"app_pages/{page}.py")
        st.cache_data.clear()
        st.cache_resource.clear()
        started = time.perf_counter()
        at.run()
        cold = time.perf_counter() - started
        assert not at.exception, f"{page}: {at.exception[0].value}"
        started = time.perf_counter()
        at.run()
        out[page] = (cold, time.perf_counter() - started)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`wb dashboard` on a free loopback port, for as long as the with-block lasts."""

    def __init__(self, store_root: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "workbench", "dashboard", "--store", str(store_root),
                                      "--port", str(self.port)], cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def __enter__(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("wb dashboard did not come up")

    def __exit__(self, *exc):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def wait_ready(page, title: str, timeout_ms: int = 60_000) -> None:
    """Until the page's script has finished and every plotly chart has drawn."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                                  .every(c => c.querySelector('.main-svg'))
                              && [...document.querySelectorAll('[data-testid="stDataFrame"]')]
                                  .every(d => d.offsetParent === null || d.querySelector('canvas'))""",
                           timeout=timeout_ms)
    # ...and until the browser has painted it: two animation frames run only once layout and paint are done, so
    # a page's rendering counts towards its own time rather than delaying the next click.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done())))")


def page_url(base: str, name: str) -> str:
    return f"{base}/" if name == "leaderboard" else f"{base}/{name}"


def _browser(pw):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    return pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)


def time_browser(store: Store) -> dict[str, dict[str, float]]:
    """Per page: in-app navigation (sidebar click) with cold server caches, again warm, and a fresh URL load."""
    from playwright.sync_api import sync_playwright

    out: dict[str, dict[str, float]] = {name: {} for name in PAGES}
    with Server(store.root) as server, sync_playwright() as pw:
        browser = _browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        started = time.perf_counter()
        page.goto(server.url)
        wait_ready(page, "Leaderboard")
        first_load = time.perf_counter() - started  # frontend bundle + leaderboard, cold
        click_waits = []
        for label in ("nav cold", "nav warm"):
            for name, title in [*list(PAGES.items())[1:], ("leaderboard", "Leaderboard")]:
                link = page.locator('[data-testid="stSidebarNav"] a', has_text=title)
                # Clock starts at the click itself: Playwright first waits until the link can take a click (the
                # browser may still be busy with the page before, whose own time that is).
                started = time.perf_counter()
                link.click(trial=True)
                click_waits.append(time.perf_counter() - started)
                started = time.perf_counter()
                link.click()
                wait_ready(page, title)
                out[name][label] = time.perf_counter() - started
        for name, title in PAGES.items():
            page.goto("about:blank")
            started = time.perf_counter()
            page.goto(page_url(server.url, name))
            wait_ready(page, title)
            out[name]["URL load"] = time.perf_counter() - started
        out["leaderboard"]["first load"] = first_load
        print(f"waits for a sidebar link to take a click (not counted in nav): max {max(click_waits):.2f} s",
              file=sys.stderr)
        browser.close()
    return out


def _shrink(path: Path) -> None:
    """256-colour PNG: a UI screenshot loses nothing visible and shrinks about threefold."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def screenshots(store_root: Path, out: Path, query: dict[str, str] | None = None) -> list[Path]:
    """A PNG of each whole page, from a real browser; `query` holds URL parameters per page (e.g. compare's a, b)."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    files = []
    with Server(store_root) as server, sync_playwright() as pw:
        browser = _browser(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        for name, title in PAGES.items():
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(page_url(server.url, name) + ((query or {}).get(name) or ""))
            wait_ready(page, title)
            # Streamlit scrolls inside its main section, so a "full page" shot is the viewport: grow it to fit
            # (twice: elements below the old fold mount only once they are in view, and the page grows again).
            for _ in range(2):
                height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
                page.set_viewport_size({"width": 1280, "height": min(max(900, height), 4000)})
                page.wait_for_timeout(2500)
                wait_ready(page, title)
            page.wait_for_timeout(1000)  # let plotly's transitions and the data grids settle
            path = out / f"{name}.png"
            page.screenshot(path=str(path))
            _shrink(path)
            files.append(path)
        browser.close()
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["bench", "screenshots"], default="bench")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--store", type=Path, help="bench: reuse (or create) this store; screenshots: the store")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--no-browser", action="store_true", help="AppTest timings only")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="screenshots: the pair to compare")
    args = parser.parse_args()
    if args.mode == "screenshots":
        query = {"compare": f"?a={args.compare[0]}&b={args.compare[1]}"} if args.compare else None
        for path in screenshots(args.store, args.out, query):
            print(f"{path}  {path.stat().st_size // 1024} KiB")
        return

    tmp = None
    root = args.store
    if root is None:
        tmp = tempfile.mkdtemp(prefix="wb-bench-store-")
        root = Path(tmp) / "store"
    try:
        if not (root / "index.db").exists():
            started = time.perf_counter()
            make_store(root, args.runs)
            print(f"wrote {args.runs} runs in {time.perf_counter() - started:.1f} s to {root}", file=sys.stderr)
        store = Store(root)
        n = len(store.list_runs())
        apptest = time_apptest(store)
        rows = {name: {"AppTest cold": cold, "AppTest warm": warm} for name, (cold, warm) in apptest.items()}
        if shutil.which("chromium") and not args.no_browser:
            for name, times in time_browser(store).items():
                rows[name].update(times)
        columns = list(dict.fromkeys(c for r in rows.values() for c in r))
        print(f"\nPage load time (s) on a store of {n} runs; target < 2 s per page. AppTest: the page script "
              "alone; nav: sidebar click to drawn page; URL load: a fresh tab (frontend bundle included)")
        print(f"{'page':<12}" + "".join(f"{c:>14}" for c in columns))
        for name, r in rows.items():
            print(f"{name:<12}" + "".join(f"{r[c]:>14.2f}" if c in r else f"{'':>14}" for c in columns))
        worst = max(t for r in rows.values() for c, t in r.items() if c != "first load")
        print(f"slowest (excluding the first load of the frontend): {worst:.2f} s -> "
              f"{'OK' if worst < 2 else 'OVER TARGET'}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

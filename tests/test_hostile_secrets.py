"""Nothing secret or active leaves wb (issue 30, causes 5 and 6 and the markup item of cause 3):

- a URL's user:password@ and ?token= reach the server, but no file wb or MLflow writes, nor wb's output, MLflow's
  "View run at" line included;
- names, outputs and data from users are shown as text: no Markdown image fetched by the dashboard's viewer (real
  Chromium), no terminal escape reaching the terminal, no Rich markup error from a `[/bold]` in a name.
"""

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest
from hostile_support import Workspace, run_cli, workspace  # noqa: F401  (fixtures)
from loopback import serving
from test_cli import wb
from test_judge import RUBRIC, ScriptedJudge
from test_tracking import _free_port, running_mlflow_server

# ---- cause 5: credentials and tokens in URLs ------------------------------------------------------------------

SECRETS = ("SuitePass1", "SuiteTok1", "CliPass2", "CliTok2", "EndpointPass3", "EndpointTok3", "MlflowPass4")


class ServedJudge(ScriptedJudge):
    """A served model (GET /models, one-message chats answered 'hi') and a judge (a valid verdict), noting the path
    and Authorization header of each request."""

    def _note(self):
        with self.server.lock:
            self.server.seen.append((self.path, self.headers.get("Authorization")))

    def do_GET(self):
        self._note()
        self.send_json({"data": [{"id": "scripted"}]})

    def do_POST(self):
        self._note()
        messages = self.body()["messages"]
        self.chat("hi" if len(messages) == 1 else json.dumps({"rationale": "fine", "score": 4}))


@pytest.fixture
def served_judge():
    with serving(ServedJudge, seen=[]) as server:
        yield server


@pytest.fixture
def mlflow_backend(tmp_path):
    """`mlflow server` on loopback (sqlite backend, artifacts beside it): (its URL, its folder)."""
    root = tmp_path / "mlflow"
    root.mkdir()
    with running_mlflow_server(root) as uri:
        yield uri, root


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_url_credentials_and_tokens_are_sent_but_never_stored(served_judge, mlflow_backend, tmp_path,
                                                              tiny_model_dir):
    """A judge URL with user:password@ and ?token= (in a suite file, then on `wb judge`'s command line), an
    endpoint checkpoint's URL with both, and an MLflow URI with a password: each request carries them, and
    `grep -r` finds none of them in the store, WB_HOME (the judge cache) or MLflow's backend folder."""
    mlflow_uri, mlflow_root = mlflow_backend
    port = served_judge.server_address[1]
    (tmp_path / "qa.jsonl").write_text(json.dumps({"id": "a", "prompt": "Say hi.", "reference": "hi"}) + "\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text(json.dumps({
        "name": "creds", "judge": {"base_url": f"http://alice:SuitePass1@127.0.0.1:{port}/v1?token=SuiteTok1",
                                   "model": "scripted", "retries": 0, "timeout_s": 10},
        "tasks": [{"name": "qa", "data": "qa.jsonl", "generation": {"max_new_tokens": 4},
                   "scorers": [{"type": "contains"}, {"type": "judge", "rubric": RUBRIC}]}]}))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WB_JUDGE_CACHE"))},
           "WB_HOME": str(tmp_path / "home"), "WB_STORE": str(tmp_path / "store")}

    evaluated = wb("eval", tiny_model_dir, "--suite", suite, "--json",
                   "--mlflow", mlflow_uri.replace("http://", "http://carol:MlflowPass4@"), env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    # MLflow's own line, through wb's stderr, with the password taken out
    assert f"View run {json.loads(evaluated.stdout)['run_id']} at: {mlflow_uri}/#/experiments/" in evaluated.stderr
    judged = wb("judge", json.loads(evaluated.stdout)["run_id"], "--judge-model", "scripted-2", "--json",
                f"--judge-url=http://bob:CliPass2@127.0.0.1:{port}/v1?token=CliTok2", env=env)
    assert judged.returncode == 0, judged.stderr
    endpoint = wb("eval", f"http://erin:EndpointPass3@127.0.0.1:{port}/v1?token=EndpointTok3", "--endpoint-model",
                  "scripted", "--suite", suite, "--json", env=env)
    assert endpoint.returncode == 0, endpoint.stderr

    # the requests themselves went to the full URLs
    seen = set(served_judge.seen)
    assert ("/v1/chat/completions?token=SuiteTok1", _basic("alice", "SuitePass1")) in seen
    assert ("/v1/chat/completions?token=CliTok2", _basic("bob", "CliPass2")) in seen
    assert ("/v1/models?token=EndpointTok3", _basic("erin", "EndpointPass3")) in seen
    assert ("/v1/chat/completions?token=EndpointTok3", _basic("erin", "EndpointPass3")) in seen

    folders = [tmp_path / "store", tmp_path / "home", mlflow_root]
    assert (tmp_path / "home" / "judge-cache").is_dir() and (tmp_path / "store" / "index.db").is_file()
    assert any((mlflow_root / "artifacts").rglob("run.json"))
    found = subprocess.run(["grep", "-r", "-a", "-l", "-E", "|".join(SECRETS), *map(str, folders)],
                           check=False, capture_output=True, text=True)
    assert found.returncode == 1 and found.stdout == "", found.stdout  # 1: grep read everything, matched nothing
    for res in (evaluated, judged, endpoint):
        assert not any(s in res.stdout + res.stderr for s in SECRETS), res.stdout + res.stderr
    manifest = json.loads((tmp_path / "store" / "runs" / json.loads(judged.stdout)["run_id"] / "run.json")
                          .read_text())
    assert manifest["config"]["judge"]["base_url"] == f"http://127.0.0.1:{port}/v1"
    assert manifest["command"].endswith(f" --judge-url=http://127.0.0.1:{port}/v1")


# ---- cause 6: the dashboard shows user data as text ----------------------------------------------------------

PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360"
                      "f8cf000000030101009d4d0b2a0000000049454e44ae426082")


class PixelServer(http.server.BaseHTTPRequestHandler):
    """A 1x1 PNG on loopback that counts who asked for it."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        with self.server.lock:
            self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PIXEL)))
        self.end_headers()
        self.wfile.write(PIXEL)


@pytest.fixture
def pixel_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PixelServer)
    server.lock, server.hits, server.daemon_threads = threading.Lock(), [], True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _hostile_runs(store, image: str) -> tuple[str, str, str]:
    """Two eval runs and a failed one whose checkpoint, suite, task, metric, prompts, outputs and error each hold
    a Markdown image (and a link): (run A, run B, the failed run)."""
    ids = []
    for side in ("a", "b"):
        manifest = {"checkpoint": {"name": f"x {image} {side}", "kind": "adapter", "sha": side * 12},
                    "suite": f"suite {image}", "limit": None}
        with store.open_run("eval", manifest) as run:
            run.write_samples(f"task {image}", [
                {"id": f"item {image} {i}", "messages": [{"role": "user", "content": f"prompt {image}"}],
                 "output": f"{side} says {image} [link](http://example.invalid/)", "reference": f"ref {image}",
                 "scores": {f"score {image}": float(i == 0) if side == "a" else float(i == 1)}}
                for i in range(2)])
            run.add_metric(f"task {image}", f"score {image}", 0.5, stderr=0.1, n=2, higher_is_better=True,
                           source="task")
        ids.append(run.run_id)
    with pytest.raises(RuntimeError), store.open_run("eval", {"checkpoint": {"name": f"x {image} c"}}) as run:
        ids.append(run.run_id)
        raise RuntimeError(f"failed on {image}")
    return tuple(ids)


def test_dashboard_shows_a_markdown_image_name_as_text_and_fetches_nothing(pixel_server, tmp_path):
    """Real Chromium on the Compare and Run detail pages of runs whose names, outputs and error hold
    `![px](http://127.0.0.1:PORT/pixel.png)`: the text is shown as typed, and nothing asks for the pixel."""
    import test_dashboard_browser as browser

    if browser.CHROMIUM is None:
        pytest.skip("needs Debian's chromium: apt-get install -y chromium")
    from playwright import sync_api  # chromium is here: a missing playwright is a broken setup, not a skip

    from workbench.store import Store

    pixel = f"http://127.0.0.1:{pixel_server.server_address[1]}/pixel.png"
    image = f"![px]({pixel})"
    store = Store(tmp_path / "store")
    run_a, run_b, failed = _hostile_runs(store, image)
    port = _free_port()
    with open(tmp_path / "dashboard.log", "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workbench", "dashboard", "--store", str(store.root),
                                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).close()
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, log.read()
                    time.sleep(0.5)
            asked = []
            with sync_api.sync_playwright() as pw:
                chromium = pw.chromium.launch(executable_path=browser.CHROMIUM, args=browser.CHROMIUM_ARGS)
                try:
                    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
                    page.set_default_timeout(60_000)
                    page.on("request", lambda request: asked.append(request.url))
                    page.goto(f"{url}/compare?a={run_a}&b={run_b}")
                    page.get_by_role("heading", name="Compare").wait_for()
                    # the subheader, the table, the drill-down's names and outputs: each as typed
                    page.get_by_text(f"x {image} a (A) → x {image} b (B)").wait_for()
                    page.locator('[data-testid="stTable"]').get_by_text(f"score {image}").first.wait_for()
                    page.get_by_role("strong").filter(has_text=f"A: x {image} a").wait_for()
                    page.get_by_text(f"b says {image} [link](http://example.invalid/)").wait_for()
                    page.get_by_text(f"prompt {image}").wait_for()
                    # a run reference in the page's URL that matches nothing is shown in the error as typed too
                    page.goto(f"{url}/compare?a={urllib.parse.quote(image)}&b={run_b}")
                    page.get_by_text(f"'{image}'").filter(visible=True).first.wait_for()
                    for run_id, needle in ((run_b, f"x {image} b"), (failed, f"failed on {image}")):
                        page.goto(f"{url}/runs?run={run_id}")
                        page.get_by_role("heading", name="Run detail").wait_for()
                        page.get_by_text(needle).filter(visible=True).first.wait_for()  # not the table's cells
                    page.wait_for_load_state("networkidle")
                    sources = page.locator("img").evaluate_all("images => images.map(i => i.src)")
                    assert not [s for s in sources if "/pixel.png" in s], sources
                finally:
                    chromium.close()
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(30)
    assert not [u for u in asked if u.startswith((pixel, "http://example.invalid"))], asked
    assert pixel_server.hits == []


# ---- terminal: user data printed as text ----------------------------------------------------------------------

# a window title (OSC 0), a screen clear (CSI 2J), an OSC 8 link, a colour and a Rich closing tag
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J \x1b]8;;http://evil.invalid/\x1b\\click\x1b]8;;\x1b\\ \x1b[31mred [/bold]"
SHOWN = r"\x1b]0;PWNED\x07\x1b[2J \x1b]8;;http://evil.invalid/\x1b\click\x1b]8;;\x1b\ \x1b[31mred [/bold]"


def _assert_printed_as_text(res) -> None:
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    for stream in (res.stdout, res.stderr):
        assert not any(c in stream for c in "\x1b\x07\x9b"), repr(stream[-2000:])


def test_data_check_shows_a_rows_escapes_instead_of_sending_them(tmp_path, tiny_model_dir):
    rows = [{"prompt": f"Say hi {HOSTILE}", "completion": f"hi {HOSTILE}"}] + [
        {"prompt": f"q{i}", "completion": f"a{i}"} for i in range(3)]
    data = tmp_path / f"rows [red] {chr(27)}[2J.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # COLUMNS: the row must be on one line to be found whole (tmp paths under xdist make the table wide)
    res = wb("data", "check", data, "--template", tiny_model_dir, env={"WB_STORE": str(tmp_path / "store"),
                                                                       "COLUMNS": "400"})
    _assert_printed_as_text(res)
    assert f"Say hi {SHOWN}" in res.stdout and f"hi {SHOWN}" in res.stdout
    # the table's title names it, wrapped at the table's width wherever the tmp path puts the line ends
    assert r"rows[red]\x1b[2J.jsonl" in "".join(res.stdout.split())


def test_compare_samples_shows_outputs_and_names_as_text(tmp_path):
    from workbench.store import Store

    store = Store(tmp_path / "store")
    ids = []
    for side in ("a", "b"):
        manifest = {"checkpoint": {"name": f"ckpt [/bold] {side}", "kind": "adapter", "sha": side * 12},
                    "suite": "s", "limit": None}
        with store.open_run("eval", manifest) as run:
            run.write_samples("say", [{"id": "x [/bold]", "messages": [{"role": "user", "content": f"Q {HOSTILE}"}],
                                       "output": f"{side}: {HOSTILE}", "reference": "r", "scores": {"exact": 0.0}}])
            run.add_metric("say", "exact [/bold]", 0.0, n=1, higher_is_better=True, source="task")
        ids.append(run.run_id)
    res = wb("compare", *ids, "--samples", "1", "--store", store.root, env={"COLUMNS": "400"})
    _assert_printed_as_text(res)
    for text in (f"a: {SHOWN}", f"b: {SHOWN}", "ckpt [/bold] a", "x [/bold]", "exact [/bold]"):
        assert text in res.stdout, (text, res.stdout)


# ---- cause 3, last item: a `[/bold]` in a name is text, not Rich markup ------------------------------------------

def test_recipe_and_suite_names_with_rich_markup_are_printed_as_text(tmp_path, tiny_model_dir):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"prompt": f"Say {i}", "reference": str(i)}) + "\n"
                                                 for i in range(2)))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: 'x [/bold] [red]y'\ntasks:\n  - name: 'say [/]'\n    data: rows.jsonl\n"
                     "    generation: {max_new_tokens: 2}\n    scorers: [{type: exact}]\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: 'r [/bold] z'\nbase: {tiny_model_dir}\ntrain_data: rows.jsonl\n"
                      "training: {max_steps: 1, batch_size: 2}\n")
    env = {"WB_STORE": str(tmp_path / "store")}
    quiet = wb("--quiet", "eval", tiny_model_dir, "--suite", suite, "--json", env=env)
    assert quiet.returncode == 0 and "Traceback" not in quiet.stderr, quiet.stderr
    assert [m["task"] for m in json.loads(quiet.stdout)["metrics"]] == ["say [/]"]
    loud = wb("eval", tiny_model_dir, "--suite", suite, env=env)
    assert loud.returncode == 0 and "Traceback" not in loud.stderr, loud.stderr
    assert "on suite x [/bold] [red]y" in loud.stderr and "say [/]" in loud.stdout
    trained = wb("--quiet", "train", recipe, "-o", tmp_path / "adapter", "--json", env=env)
    assert trained.returncode == 0 and "Traceback" not in trained.stderr, trained.stderr
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    loud = wb("train", recipe, "-o", tmp_path / "adapter2", env=env)
    assert loud.returncode == 0 and "Traceback" not in loud.stderr, loud.stderr
    assert "training r [/bold] z (" in loud.stderr

"""The endpoint runtime against a real OpenAI-compatible server: llama.cpp's (llama-cpp-python's), started here on
loopback for the default model's Q8_0 GGUF. `wb eval URL` answers as `wb eval FILE.gguf` does (same greedy
answers), runs an lm-eval generation task, and every way of pointing it at nothing is one line, exit 4, within
10 s, with no run left in the store. The key lives in the headers only: never on disk."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUITE_LIMIT = 16
ALIAS = "smollm-q8"
# llama-cpp-python's server penalises repeats by default (1.1): greedy means none, as wb's llama.cpp runtime does
GREEDY = ["--endpoint-args", "repeat_penalty=1.0"]


def wb(*args, store: Path, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "WB_STORE": str(store), **(env or {})})


def runs_in(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "runs").glob("*")) if (store / "runs").is_dir() else []


@pytest.fixture(scope="module")
def q8_gguf(default_export) -> Path:
    """The default model exported to Q8_0, as the demo exports it (llama.cpp's converter and quantizer): the
    session's one export (tests/conftest.py)."""
    return Path(default_export["q8_0"].path)


@pytest.fixture(scope="module")
def server(q8_gguf):
    from workbench.runtimes.llamacpp.server import local_server

    with local_server(q8_gguf, n_ctx=2048, alias=ALIAS) as url:
        yield url


def test_endpoint_gives_the_gguf_s_greedy_answers(server, q8_gguf, tmp_path):
    store = tmp_path / "store"
    served = wb("eval", server, "--endpoint-model", ALIAS, "--suite", "contacts", "--limit", str(SUITE_LIMIT),
                *GREEDY, "--json", store=store)
    assert served.returncode == 0, served.stderr
    local = wb("eval", str(q8_gguf), "--suite", "contacts", "--limit", str(SUITE_LIMIT), "--json", store=store)
    assert local.returncode == 0, local.stderr
    from workbench.store import Store

    st = Store.open(store)
    a, b = st.load(json.loads(served.stdout)["run_id"]), st.load(json.loads(local.stdout)["run_id"])
    pairs = list(zip(a.samples("contacts"), b.samples("contacts")))
    assert len(pairs) == SUITE_LIMIT and all(x["id"] == y["id"] for x, y in pairs)
    differ = [(x["id"], x["output"], y["output"]) for x, y in pairs if x["output"] != y["output"]]
    assert not differ, differ
    assert [m["value"] for m in a.metrics] == [m["value"] for m in b.metrics]
    assert a.manifest["checkpoint"]["format"] == "endpoint" and a.manifest["checkpoint"]["name"] == ALIAS
    assert a.manifest["runtime"] == {"runtime": "endpoint", "backend": "endpoint", "base_url": server,
                                     "model": ALIAS, "api_key": "none",
                                     "request_fields": {"repeat_penalty": 1.0}}
    assert b.manifest["runtime"]["runtime"] == "llama.cpp"


def test_endpoint_runs_an_lm_eval_generation_task(server, tmp_path, data_dir):
    store = tmp_path / "store"
    res = wb("eval", server, "--endpoint-model", ALIAS, "--tasks", "gsm8k", "--limit", "2", "--num-fewshot", "1",
             "--data-dir", str(data_dir), *GREEDY, "--json", store=store)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    metrics = {(m["task"], m["metric"]): m for m in out["metrics"]}
    assert metrics[("gsm8k", "exact_match,strict-match")]["n"] == 2
    from workbench.store import Store

    run = Store.open(store).load(out["run_id"])
    settings = run.manifest["harness"][0]["settings"]
    assert settings["model"] == "local-completions" and settings["model_args"]["model"] == ALIAS
    assert settings["model_args"]["base_url"] == f"{server}/completions"
    assert run.manifest["harness"][0]["cache"] == {"result": "off"}  # what a URL serves can change
    samples = run.samples("lm-eval.gsm8k")  # one per document and filter
    assert {s["doc_id"] for s in samples} == {0, 1} and all(s["responses"] for s in samples)


def test_a_log_likelihood_task_on_an_endpoint_is_refused_before_a_run(server, tmp_path, data_dir):
    store = tmp_path / "store"
    res = wb("eval", server, "--endpoint-model", ALIAS, "--tasks", "mmlu_anatomy", "--limit", "2", "--data-dir",
             str(data_dir), store=store)
    assert res.returncode == 3 and "mmlu_anatomy scores log-likelihoods" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and runs_in(store) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["server down", "not the API's base URL", "no model named", "key unset"])
def test_pointing_at_nothing_is_one_line(case, server, tmp_path):
    store = tmp_path / "store"
    args = {"server down": [f"http://127.0.0.1:{_free_port()}/v1", "--endpoint-model", ALIAS],
            "not the API's base URL": [server.removesuffix("/v1"), "--endpoint-model", ALIAS],
            "no model named": [server],
            "key unset": [server, "--endpoint-model", ALIAS, "--endpoint-key-env", "WB_TEST_NO_SUCH_KEY"]}[case]
    started = time.monotonic()
    res = wb("eval", *args, "--suite", "contacts", "--limit", "1", store=store,
             env={"WB_TEST_NO_SUCH_KEY": ""})
    seconds = time.monotonic() - started
    expected = {"server down": (4, "cannot reach it"), "not the API's base URL": (4, "GET /models answered HTTP 404"),
                "no model named": (3, "--endpoint-model NAME"),
                "key unset": (4, "environment variable WB_TEST_NO_SUCH_KEY is not set")}[case]
    assert (res.returncode, len(res.stderr.strip().splitlines())) == (expected[0], 1), res.stderr
    assert expected[1] in res.stderr and seconds < 10
    assert runs_in(store) == []


def test_a_keyed_endpoint_takes_the_key_from_the_environment_and_never_keeps_it(q8_gguf, tmp_path):
    from workbench.runtimes.llamacpp.server import local_server

    key = "wb-test-secret-7f3a9c"
    store = tmp_path / "store"
    with local_server(q8_gguf, n_ctx=1024, alias=ALIAS, api_key=key) as url:
        refused = wb("eval", url, "--endpoint-model", ALIAS, "--suite", "contacts", "--limit", "1", store=store)
        assert refused.returncode == 4 and "HTTP 401" in refused.stderr, refused.stderr
        ok = wb("eval", url, "--endpoint-model", ALIAS, "--endpoint-key-env", "WB_TEST_KEY", "--suite", "contacts",
                "--limit", "2", "--json", store=store, env={"WB_TEST_KEY": key})
    assert ok.returncode == 0, ok.stderr
    assert key not in ok.stdout + ok.stderr + refused.stderr
    run = json.loads(ok.stdout)
    assert run["checkpoint"]["extra"]["endpoint"]["api_key_env"] == "WB_TEST_KEY"
    for path in store.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path

"""llama.cpp's OpenAI-compatible server (llama-cpp-python's `python -m llama_cpp.server`) for a GGUF file, on
127.0.0.1 at a free port, waited on until it answers, and always stopped afterwards: the local judge, and a GGUF
served as an endpoint (workbench.runtimes.endpoint)."""

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from workbench.errors import EnvironmentProblem, MissingExtra
from workbench.system.extras import require
from workbench.system.faultpoints import pause_point

SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
START_TIMEOUT_S = 180.0


def check_server_extra() -> None:
    require("llama_cpp", "llama.cpp's server", "gguf")
    for module in SERVER_MODULES:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra("llama.cpp's server (llama_cpp.server)", "judge", module)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(gguf: Path, *, n_ctx: int = 4096, threads: int | None = None, alias: str = "judge",
                 api_key: str | None = None):
    """Yields the server's base URL (http://127.0.0.1:PORT/v1); stops the server on exit, error or Ctrl-C.
    `api_key`: requests must carry it (it is passed on the server's command line: for tests and loopback use)."""
    from workbench.checkpoints.gguf_file import check_gguf_magic
    from workbench.runtimes.llamacpp.native import cpu_threads

    check_gguf_magic(Path(gguf))
    check_server_extra()
    port = free_port()
    # The file's own chat template, named explicitly (see workbench.runtimes.llamacpp.model.load_gguf for why).
    from workbench.system.children import guarded_env, module_command

    cmd = module_command("llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
                         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
                         "--n_threads", str(threads or cpu_threads()), "--chat_format", "chat_template.default",
                         "--seed", "0", "--verbose", "False", *(["--api_key", api_key] if api_key else []))
    log = tempfile.NamedTemporaryFile(prefix="wb-llama-server-", suffix=".log", delete=False)  # noqa: SIM115
    # Own session: a Ctrl-C in the terminal reaches wb, which then stops the server itself; the runner ends the
    # server when wb is gone without stopping it (kill -9).
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=guarded_env())
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_healthy(proc, base_url, Path(log.name), {"Authorization": f"Bearer {api_key}"} if api_key else {})
        pause_point("judge-server-up")
        yield base_url
    finally:
        _stop(proc)
        log.close()
        os.unlink(log.name)


def _wait_healthy(proc: subprocess.Popen, base_url: str, log: Path, headers: dict,
                  timeout: float = START_TIMEOUT_S) -> None:
    httpx = require("httpx", "The LLM judge", "judge")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise EnvironmentProblem(f"llama.cpp's server exited with code {proc.returncode}: "
                                     + " | ".join(tail))
        try:
            if httpx.get(f"{base_url}/models", headers=headers, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise EnvironmentProblem(f"llama.cpp's server did not answer within {timeout:.0f}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # uvicorn shuts down cleanly on SIGTERM
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

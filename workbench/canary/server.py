"""`wb serve`'s whole life: check everything (the options, both sides, the port, the store) before anything is
written, start llama.cpp's server for a GGUF side, open a run of kind `canary` whose folder holds the log, serve
the app on uvicorn until SIGINT or SIGTERM, then close the run with its counts and stop the servers."""

import contextlib
import ipaddress
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from workbench.canary.app import PURPOSE, Canary, CanarySettings, build_app
from workbench.canary.log import LOG_NAME, CanaryLog
from workbench.canary.routing import BASELINE, CANDIDATE, USER_HEADER
from workbench.canary.upstream import resolve_upstream, started
from workbench.errors import BadInput, EnvironmentProblem
from workbench.system.console import warn
from workbench.system.extras import require

GRACEFUL_S = 10


def check_options(fraction: float | None, shadow: bool) -> float:
    """The candidate's share: `fraction` (0.1 when not given) in [0, 1]; none with --shadow."""
    if shadow and fraction is not None:
        raise BadInput("--fraction and --shadow: give one (--shadow sends every request to both sides)")
    fraction = 0.1 if fraction is None else fraction
    if not 0.0 <= fraction <= 1.0:
        raise BadInput(f"--fraction {fraction:g}: a share of the traffic, between 0 and 1")
    return fraction


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now (so a port in use is known before anything is written)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise BadInput(f"--host '{host}': an IP address (127.0.0.1, ::1, 0.0.0.0) or localhost") from None
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted connections only for a socket whose proto says TCP;
    # with proto 0 every answer waited on the client's delayed ACK (about 40 ms a request, measured)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EnvironmentProblem(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def serve(baseline: str, candidate: str, *, fraction: float | None = None, shadow: bool = False,
          host: str = "127.0.0.1", port: int = 8080, no_content: bool = False,
          baseline_model: str | None = None, candidate_model: str | None = None,
          baseline_key_env: str | None = None, candidate_key_env: str | None = None,
          timeout_s: float = 120.0, max_failures: int = 5, cooldown_s: float = 30.0, n_ctx: int = 4096,
          threads: int | None = None, store=None, command: str = "",
          on_ready: Callable[[str, Path], None] | None = None):
    """Serve the canary until a signal stops it; returns its run (kind `canary`, the log in `log.jsonl`)."""
    from workbench.store.runs import Store

    settings = CanarySettings(fraction=check_options(fraction, shadow), shadow=shadow, no_content=no_content,
                              timeout_s=timeout_s, max_failures=max_failures, cooldown_s=cooldown_s)
    uvicorn = require("uvicorn", PURPOSE, "serve")
    require("starlette", PURPOSE, "serve")
    sides = [resolve_upstream(candidate, CANDIDATE, model=candidate_model, key_env=candidate_key_env),
             resolve_upstream(baseline, BASELINE, model=baseline_model, key_env=baseline_key_env)]
    host = "127.0.0.1" if host == "localhost" else host
    sock = bind(host, port)
    if not is_loopback(host):
        warn(f"--host {host}: the canary answers whoever reaches this address (no key is asked of clients)")
    with contextlib.closing(sock):
        st = Store.open(store)
        with started(sides, n_ctx=n_ctx, threads=threads):
            cand, base = sides
            url = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}/v1"
            manifest = {"checkpoint": {"name": f"{base.ref} vs {cand.ref}"},
                        "baseline": base.describe(), "candidate": cand.describe(),
                        "mode": "shadow" if shadow else "fraction", "fraction": None if shadow else settings.fraction,
                        "no_content": no_content, "url": url, "user_header": USER_HEADER, "log": LOG_NAME,
                        "command": command}
            with st.open_run("canary", manifest) as run:
                log = CanaryLog(run.path / LOG_NAME)
                canary = Canary(base, cand, log, settings)
                try:
                    config = uvicorn.Config(build_app(canary), log_level="warning", access_log=False,
                                            timeout_graceful_shutdown=GRACEFUL_S, lifespan="on")
                    server = _server_class(uvicorn)(config)
                    if on_ready:
                        on_ready(url, log.path)
                    server.run(sockets=[sock])
                finally:
                    log.close()
                    _record_counts(run, canary)
    return run


def _record_counts(run, canary: Canary) -> None:
    run.add_metric("canary", "records", canary.log.records, higher_is_better=None)
    for key, value in canary.counts.items():
        run.add_metric("canary", key, value, higher_is_better=None)
    for side, health in canary.health.items():
        for key, value in health.counts.items():
            run.add_metric("canary", f"{side}_{key}", value, higher_is_better=None)


def _server_class(uvicorn):
    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn raises the signal again after its graceful shutdown, which would end wb before the run is
            # closed and the llama.cpp servers stopped: here the signal ends the serving, and wb then exits 0.
            handlers = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)

    return Server

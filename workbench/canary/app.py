"""The canary's HTTP app (Starlette): POST /v1/chat/completions routed to a side and passed through (a streamed
answer as its SSE bytes, as they come), GET /v1/models, GET /health; one log record per exchange.

A request goes to the side its conversation key hashes to (workbench.canary.routing), or to both with `shadow` (the
baseline's answer returned, the candidate's only logged). A candidate that fails (transport error, timeout, any
status but 200; for a stream, before its first byte) fails over to the baseline: counted, and recorded in the
record's `failover`. A baseline failure is returned with its status (502 unreachable, 504 timed out) and error. A
side that fails `max_failures` times in a row leaves the rotation for `cooldown_s` (a warning on stderr).

A record is written before the client has the whole answer (a stream's last bytes pass only after it), so every
answered request is in the log; a shadow record, once the candidate has answered too."""

import asyncio
import json
import time
from dataclasses import dataclass

from workbench.canary.completion import StreamedCompletion
from workbench.canary.log import CanaryLog, exchange_record
from workbench.canary.routing import BASELINE, CANDIDATE, SideHealth, conversation_key, routed_side
from workbench.canary.upstream import Upstream
from workbench.system.console import info, warn
from workbench.system.extras import require

PURPOSE = "wb serve (the canary endpoint)"


@dataclass
class Outcome:
    """One side's answer to one request (a stream's: up to its status and headers)."""

    side: str
    status: int
    latency_ms: float
    response: dict | None = None
    body: bytes = b""
    media_type: str = "application/json"
    error: str | None = None
    stream: object = None  # the open httpx response of a stream that answered 200

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> dict:
        return {"side": self.side, "status": self.status, "latency_ms": round(self.latency_ms, 2),
                "error": self.error}


@dataclass
class CanarySettings:
    fraction: float = 0.1
    shadow: bool = False
    no_content: bool = False
    timeout_s: float = 120.0
    max_failures: int = 5
    cooldown_s: float = 30.0
    served_model: str = "wb-canary"


def error_body(message: str, kind: str = "upstream_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


class Canary:
    """The router's state: the sides, their health, the log, and the one pooled HTTP client."""

    def __init__(self, baseline: Upstream, candidate: Upstream, log: CanaryLog, settings: CanarySettings):
        self.upstreams = {BASELINE: baseline, CANDIDATE: candidate}
        self.log = log
        self.settings = settings
        self.health = {side: SideHealth(side, settings.max_failures, settings.cooldown_s) for side in self.upstreams}
        self.counts = {"failovers": 0, "bad_requests": 0, "client_disconnects": 0}
        self.client = None
        self._pending: set[asyncio.Task] = set()

    # ---- lifecycle (the app's lifespan)

    async def start(self) -> None:
        httpx = require("httpx", PURPOSE, "serve")
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout_s, connect=min(10.0, self.settings.timeout_s)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    async def stop(self) -> None:
        if self._pending:  # shadow records still waiting for the candidate
            await asyncio.wait(self._pending, timeout=self.settings.timeout_s)
        if self.client is not None:
            await self.client.aclose()

    # ---- routing

    def pick(self, routed: str) -> str:
        """The routed side if it is in rotation, else the other one if that is; both out: the routed one (a probe)."""
        other = BASELINE if routed == CANDIDATE else CANDIDATE
        if self.health[routed].in_rotation() or not self.health[other].in_rotation():
            return routed
        return other

    def _count(self, outcome: Outcome) -> None:
        health, up = self.health[outcome.side], self.upstreams[outcome.side]
        if outcome.ok:
            if health.succeeded():
                info(f"canary: the {outcome.side} ({up.describe().get('base_url') or up.gguf}) answers again: back "
                     "in rotation")
        elif health.failed():
            warn(f"canary: the {outcome.side} failed {health.failures_in_a_row} times in a row (last: "
                 f"{outcome.error}): out of rotation for {self.settings.cooldown_s:g} s")

    # ---- one side

    def _upstream_body(self, side: str, body: dict, stream: bool) -> dict:
        forwarded = {**body, "model": self.upstreams[side].model}
        if not stream:
            forwarded.pop("stream", None)
            forwarded.pop("stream_options", None)
        return forwarded

    def _failure(self, side: str, started: float, exc: Exception) -> Outcome:
        httpx = require("httpx", PURPOSE, "serve")
        latency = (time.perf_counter() - started) * 1000
        if isinstance(exc, httpx.TimeoutException):
            message = f"{side}: no answer within {self.settings.timeout_s:g} s"
            return Outcome(side, 504, latency, body=error_body(message), error=message)
        message = self.upstreams[side].redact(f"{side}: cannot reach it ({type(exc).__name__}: {exc})")
        return Outcome(side, 502, latency, body=error_body(message), error=message)

    def _refused(self, side: str, status: int, body: bytes, media_type: str, started: float) -> Outcome:
        text = self.upstreams[side].redact(body.decode("utf-8", "replace").strip()[:300])
        return Outcome(side, status, (time.perf_counter() - started) * 1000,
                       body=self.upstreams[side].redact(body.decode("utf-8", "replace")).encode(),
                       media_type=media_type, error=f"{side}: HTTP {status}: {text}")

    async def call(self, side: str, body: dict) -> Outcome:
        """A non-streamed chat completion from one side."""
        httpx = require("httpx", PURPOSE, "serve")
        up, started = self.upstreams[side], time.perf_counter()
        try:
            resp = await self.client.post(up.chat_url, json=self._upstream_body(side, body, False),
                                          headers=up.headers())
        except httpx.HTTPError as exc:
            outcome = self._failure(side, started, exc)
        else:
            media_type = resp.headers.get("content-type", "application/json")
            if resp.status_code != 200:
                outcome = self._refused(side, resp.status_code, resp.content, media_type, started)
            else:
                outcome = Outcome(side, 200, (time.perf_counter() - started) * 1000, body=resp.content,
                                  media_type=media_type)
                try:
                    outcome.response = json.loads(resp.content)
                    outcome.response["choices"][0]["message"]
                except (ValueError, KeyError, IndexError, TypeError):
                    outcome.response = None
                    outcome.status, outcome.error = 502, f"{side}: not a chat completion: {resp.text[:80]!r}"
                    outcome.body = error_body(outcome.error)
        self._count(outcome)
        return outcome

    async def open_stream(self, side: str, body: dict) -> Outcome:
        """A streamed chat completion from one side, up to its status: `stream` holds the open response on 200."""
        httpx = require("httpx", PURPOSE, "serve")
        up, started = self.upstreams[side], time.perf_counter()
        request = self.client.build_request("POST", up.chat_url, json=self._upstream_body(side, body, True),
                                            headers=up.headers())
        try:
            resp = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            outcome = self._failure(side, started, exc)
            self._count(outcome)
            return outcome
        media_type = resp.headers.get("content-type", "text/event-stream")
        if resp.status_code != 200:
            try:
                content = await resp.aread()
            except httpx.HTTPError:
                content = b""
            finally:
                await resp.aclose()
            outcome = self._refused(side, resp.status_code, content, media_type, started)
            self._count(outcome)
            return outcome
        return Outcome(side, 200, (time.perf_counter() - started) * 1000, media_type=media_type, stream=resp)

    # ---- one exchange

    async def chat(self, request):
        from starlette.responses import Response

        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.counts["bad_requests"] += 1
            return Response(error_body("the request body is not a JSON object", "invalid_request_error"),
                            status_code=400, media_type="application/json")
        key = conversation_key(request.headers, body)
        routed = BASELINE if self.settings.shadow else routed_side(key, self.settings.fraction)
        side = self.pick(routed)
        shadow_task = None
        if self.settings.shadow and side == BASELINE and self.health[CANDIDATE].in_rotation():
            shadow_task = asyncio.create_task(self.call(CANDIDATE, body))
        started = time.perf_counter()
        fields = {"user": key, "request": body, "routed": routed, "stream": bool(body.get("stream"))}
        if body.get("stream"):
            return await self._streamed(side, body, started, fields, shadow_task)
        outcome = await self.call(side, body)
        failover = None
        if not outcome.ok and side != BASELINE:
            failover, outcome = outcome.summary(), await self.call(BASELINE, body)
            self.counts["failovers"] += 1
        self._record(outcome, started, fields, failover, shadow_task)
        return Response(outcome.body, status_code=outcome.status, media_type=outcome.media_type)

    async def _streamed(self, side: str, body: dict, started: float, fields: dict, shadow_task):
        from starlette.responses import Response, StreamingResponse

        outcome = await self.open_stream(side, body)
        failover = None
        if not outcome.ok and side != BASELINE:
            failover, outcome = outcome.summary(), await self.open_stream(BASELINE, body)
            self.counts["failovers"] += 1
        if not outcome.ok:
            self._record(outcome, started, fields, failover, shadow_task)
            return Response(outcome.body, status_code=outcome.status, media_type=outcome.media_type)
        return StreamingResponse(self._relay(outcome, started, fields, failover, shadow_task),
                                 status_code=200, media_type=outcome.media_type)

    async def _relay(self, outcome: Outcome, started: float, fields: dict, failover, shadow_task):
        httpx = require("httpx", PURPOSE, "serve")
        acc, resp, first_byte = StreamedCompletion(), outcome.stream, outcome.latency_ms
        outcome.stream = None
        finished = False
        try:
            async for chunk in resp.aiter_raw():
                acc.feed(chunk)
                if acc.done and not finished:
                    # the record goes out before the stream's last bytes reach the client
                    finished = True
                    self._stream_done(outcome, acc, started, first_byte, fields, failover, shadow_task)
                yield chunk
        except httpx.HTTPError as exc:
            outcome.error = self.upstreams[outcome.side].redact(
                f"{outcome.side}: the stream broke off ({type(exc).__name__}: {exc})")
        except BaseException:  # the client went away (cancelled), or the server is stopping
            if not finished:
                self.counts["client_disconnects"] += 1
                outcome.error = f"{outcome.side}: the client disconnected before the end of the stream"
            raise
        finally:
            if not finished:
                self._stream_done(outcome, acc, started, first_byte, fields, failover, shadow_task)
            await resp.aclose()

    def _stream_done(self, outcome: Outcome, acc: StreamedCompletion, started: float, first_byte: float,
                     fields: dict, failover, shadow_task) -> None:
        if outcome.error is None and not acc.done:
            outcome.error = f"{outcome.side}: the stream ended without [DONE]"
        outcome.response = acc.completion()
        outcome.latency_ms = (time.perf_counter() - started) * 1000
        self._count(outcome)
        self._record(outcome, started, fields | {"first_byte_ms": round(first_byte, 2), "chunks": acc.chunks},
                     failover, shadow_task)

    def _record(self, outcome: Outcome, started: float, fields: dict, failover, shadow_task) -> None:
        """Log the exchange now, or once the shadow candidate has answered."""
        latency = (time.perf_counter() - started) * 1000
        extra = {"failover": failover} if failover else {}

        def write(shadow: dict | None) -> None:
            self.log.append(exchange_record(
                side=outcome.side, response=outcome.response, latency_ms=latency, status=outcome.status,
                error=outcome.error, no_content=self.settings.no_content, shadow=shadow, **fields, **extra))

        if shadow_task is None:
            write(None)
            return

        async def after_shadow() -> None:
            other = await shadow_task
            write({"side": other.side, "response": other.response, "latency_ms": round(other.latency_ms, 2),
                   "usage": (other.response or {}).get("usage"), "error": other.error, "status": other.status})

        task = asyncio.create_task(after_shadow())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # ---- the other routes

    def state(self) -> dict:
        return {"status": "ok", "sides": {side: {**self.upstreams[side].describe(), **health.state()}
                                          for side, health in self.health.items()},
                "records": self.log.records, **self.counts,
                "mode": "shadow" if self.settings.shadow else f"fraction {self.settings.fraction:g}"}


def build_app(canary: Canary):
    """The Starlette app around `canary`; its HTTP client lives as long as the app."""
    import contextlib

    Starlette = require("starlette.applications", PURPOSE, "serve").Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await canary.start()
        try:
            yield
        finally:
            await canary.stop()

    async def models(request):
        return JSONResponse({"object": "list", "data": [{"id": canary.settings.served_model, "object": "model",
                                                          "owned_by": "wb-canary"}]})

    async def health(request):
        return JSONResponse(canary.state())

    return Starlette(routes=[Route("/v1/chat/completions", canary.chat, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"]),
                             Route("/health", health, methods=["GET"])], lifespan=lifespan)

"""A judge endpoint: OpenAI-compatible chat completions with a concurrency limit, timeouts, retries with
exponential backoff, the verdict checked against a JSON schema (repaired, or re-asked when malformed), and the
answer cache. What still fails after the last retry raises JudgeFailure, which graders record per sample.

The API key lives only in the HTTP client's headers: it is never part of a cache key, record or message, and
is masked in whatever the endpoint sends back before that is parsed, cached or recorded.
"""

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from workbench.config import JudgeSpec
from workbench.judge.cache import JudgeCache
from workbench.runtimes.endpoint import RequestFailed, Transient, chat_choice, http_client, post_chat
from workbench.system.extras import require
from workbench.system.urls import public_url

REASK = ("Your reply was not usable: {problem}. Reply again with only one JSON object that follows the "
         "requested format, nothing else.")


class JudgeFailure(Exception):
    """One judge call that failed for good (after retries): recorded on its sample, never counted as a score."""


@dataclass
class Endpoint:
    base_url: str
    model: str  # the name sent in requests
    model_id: str  # what the cache is keyed by (for a local GGUF, its sha256)
    response_format: str  # json_schema | json_object | grammar | none
    api_key: str | None = field(default=None, repr=False)

    def describe(self) -> dict:
        """What a run record may keep: no key, and no credentials or query string from the URL."""
        return {"base_url": public_url(self.base_url), "model": self.model, "model_id": self.model_id,
                "response_format": self.response_format, "api_key": "set" if self.api_key else "none"}


@dataclass
class Counters:
    requests: int = 0  # HTTP requests sent, every attempt included
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def to_dict(self) -> dict:
        return {"requests": self.requests, "cache_hits": self.cache_hits, "retries": self.retries,
                "failures": self.failures}


def parse_verdict(content: str, schema: dict, check: Callable[[dict], str | None] | None = None):
    """(value, None) for a reply that is (or contains) a JSON object valid against `schema`, else (None, problem)."""
    jsonschema = require("jsonschema", "The LLM judge", "judge")
    value = _json_object(content)
    if value is None:
        return None, f"not a JSON object: {content.strip()[:80]!r}"
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        return None, f"{where}: {error.message}"
    problem = check(value) if check else None
    return (None, problem) if problem else (value, None)


def _json_object(text: str):
    """The reply as JSON, or repaired: code fences dropped, or the outermost {...} span taken."""
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    candidates = [text]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


class JudgeClient:
    """`start`, when given, is called once before the first request (not for cache hits) and returns the base
    URL: the local server starts only when some verdict is not in the cache. `prepare`, called once the server
    is up, turns a judge prompt into what the judge model's chat format accepts (ChatFormat.messages: without a
    system role, the system text is folded into the first user message)."""

    def __init__(self, endpoint: Endpoint, spec: JudgeSpec, cache: JudgeCache | None = None,
                 start: Callable[[], str] | None = None, prepare: Callable[[list[dict]], list[dict]] | None = None):
        require("httpx", "The LLM judge", "judge")
        self.endpoint, self.spec, self.cache = endpoint, spec, cache
        self.counters = Counters()
        self._start = start
        # The cache is per endpoint: another server's verdicts are not this one's. A local server's URL changes
        # with its port on every start, so it is keyed by its model (the GGUF's sha256) alone.
        # Keyed by the URL's public form: a password or ?token= must not go into a key (a hash can be guessed).
        self._cache_scope = public_url(endpoint.base_url) if start is None else ""
        self._prepare = prepare
        self._start_error: BaseException | None = None
        self._http = None
        self._lock = threading.Lock()

    @property
    def local(self) -> bool:
        """The judge is wb's own llama.cpp server (started on first use), not an endpoint the suite names."""
        return self._start is not None

    def _client(self):
        with self._lock:
            if self._start_error is not None:  # the other workers must not try to start the server again
                raise self._start_error
            if self._http is None:
                if self._start is not None:
                    try:
                        self.endpoint.base_url = self._start()
                    except BaseException as exc:
                        self._start_error = exc
                        raise
                self._http = http_client(self.endpoint.base_url, self.endpoint.api_key, self.spec.timeout_s)
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request_body(self, messages: list[dict], schema: dict | None) -> dict:
        """The request for `messages`; with a schema, the reply's format is enforced as the endpoint allows."""
        body = {"model": self.endpoint.model, "messages": messages, "temperature": 0.0,
                "max_tokens": self.spec.max_tokens, "seed": 0}
        mode = self.endpoint.response_format if schema is not None else "none"
        if mode == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "verdict", "strict": True, "schema": schema}}
        elif mode == "json_object":  # llama.cpp's servers turn the schema into a grammar
            body["response_format"] = {"type": "json_object", "schema": schema}
        elif mode == "grammar":
            grammar = require("llama_cpp.llama_grammar", "A GBNF grammar for the judge", "gguf")
            body["grammar"] = grammar.json_schema_to_gbnf(json.dumps(schema))
        return body

    def ask(self, messages: list[dict], schema: dict, check: Callable[[dict], str | None] | None = None) -> dict:
        """The judge's verdict for `messages` as a dict valid against `schema` (and `check`), or JudgeFailure."""
        request = self.request_body(messages, schema)
        key = self.cache.key(self.endpoint.model_id, request, self._cache_scope) if self.cache else None
        if key and (cached := self.cache.get(key)) is not None:
            value, problem = parse_verdict(cached, schema, check)
            if problem is None:
                self.counters.add("cache_hits")
                return value
        body, problem, pause = request, "no attempt made", False
        for attempt in range(self.spec.retries + 1):
            if attempt:
                self.counters.add("retries")
                if pause:
                    time.sleep(self.spec.backoff_s * 2 ** (attempt - 1))
            try:
                content = self._redact(self._post(body))  # a hostile endpoint may echo the key back
            except Transient as exc:
                problem, pause = str(exc), True
                continue
            except RequestFailed as exc:  # not retried (a 4xx): still a failure to count
                self.counters.add("failures")
                raise JudgeFailure(str(exc)) from None
            value, bad = parse_verdict(content, schema, check)
            if bad is None:
                if key:
                    self.cache.put(key, self.endpoint.model_id, content)
                return value
            # Re-asking the same prompt at temperature 0 would get the same reply: show the judge its mistake.
            problem, pause = f"malformed verdict ({bad})", False
            body = {**request, "messages": messages + [{"role": "assistant", "content": content[:4000]},
                                                       {"role": "user", "content": REASK.format(problem=bad)}]}
        self.counters.add("failures")
        raise JudgeFailure(self._redact(f"{problem}; gave up after {self.spec.retries + 1} attempts"))

    def reply(self, messages: list[dict], settings: dict | None = None) -> dict:
        """The judge's free reply to `messages` (a benchmark's own prompt, which asks for text, not JSON), with
        `settings` added to the request (e.g. max_tokens, logprobs, top_logprobs): {"content", "top_logprobs" (of
        its first token, or None)}. Nothing is asked of its format, so nothing is re-asked; cached, transient errors
        retried, else JudgeFailure."""
        request = {**self.request_body(messages, None), **(settings or {})}
        key = self.cache.key(self.endpoint.model_id, request, self._cache_scope) if self.cache else None
        if key and (cached := self.cache.get(key)) is not None:
            self.counters.add("cache_hits")
            return json.loads(cached)
        problem = "no attempt made"
        for attempt in range(self.spec.retries + 1):
            if attempt:
                self.counters.add("retries")
                time.sleep(self.spec.backoff_s * 2 ** (attempt - 1))
            try:
                choice = chat_choice(self._client(), self._prepared(request), self._redact)
            except Transient as exc:
                problem = str(exc)
                continue
            except RequestFailed as exc:
                self.counters.add("failures")
                raise JudgeFailure(str(exc)) from None
            finally:
                self.counters.add("requests")
            tokens = ((choice.get("logprobs") or {}).get("content") or [{}])[0] or {}
            reply = {"content": self._redact(choice["message"]["content"] or ""),
                     "top_logprobs": tokens.get("top_logprobs")}
            if key:
                self.cache.put(key, self.endpoint.model_id, json.dumps(reply))
            return reply
        self.counters.add("failures")
        raise JudgeFailure(self._redact(f"{problem}; gave up after {self.spec.retries + 1} attempts"))

    def _prepared(self, body: dict) -> dict:
        return {**body, "messages": self._prepare(body["messages"])} if self._prepare is not None else body

    def _post(self, body: dict) -> str:
        http = self._client()
        if self._prepare is not None:  # after the cache key: the key is the question, the model id its judge
            body = {**body, "messages": self._prepare(body["messages"])}
        self.counters.add("requests")
        return post_chat(http, body, self._redact)

    def _redact(self, text: str) -> str:
        key = self.endpoint.api_key
        return text.replace(key, "***") if key else text

    def map(self, fn: Callable, items: list, progress: Callable[[int], None] | None = None) -> list:
        """fn(item) for every item, `concurrency` at a time, results in order."""
        def one(item):
            result = fn(item)
            if progress:
                progress(1)
            return result

        pool = ThreadPoolExecutor(max_workers=self.spec.concurrency)
        try:
            return list(pool.map(one, items))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on an error (or Ctrl-C) queued calls are dropped

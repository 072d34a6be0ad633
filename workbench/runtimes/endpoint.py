"""The endpoint runtime: a model served behind an OpenAI-compatible API (Ollama, llama.cpp's server, vLLM, TGI, or
the API model a user distils from), evaluated on the same suites as a checkpoint on disk.

    wb eval http://127.0.0.1:8080/v1 --endpoint-model NAME --suite contacts [--endpoint-key-env VAR]

The reference is the API's base URL (the part before /chat/completions). Before any run opens, the key's variable
must be set and GET /models must answer within a few seconds: a wrong URL or a server that is down is one line,
exit 4. Task generations are chat completions, the server applying its own chat template; lm-eval's tasks run on
lm-eval's own API models (`local-completions`, or `local-chat-completions` with --apply-chat-template). The key lives in
the HTTP headers only: never in a checkpoint record, a manifest, lm-eval's model_args or a message.

The HTTP part (one chat completion, retried where worth it, the key masked) is also the judge's (workbench.judge).
"""

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from workbench.chat.template import thinking_variables
from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput, EnvironmentProblem
from workbench.runtimes.base import Runtime, RuntimeOptions, cut_at_stop
from workbench.system.extras import require
from workbench.system.urls import public_url, redact_urls, url_under
from workbench.toolcalls.calls import ToolCall

SCHEMES = ("http://", "https://")
PROBE_TIMEOUT_S = 5.0  # GET /models, connect and read: a refused or silent server is reported within 10 s
REQUEST_TIMEOUT_S = 300.0
RETRIES = 3
BACKOFF_S = 1.0
RETRY_STATUS = {408, 409, 425, 429}  # and every 5xx
PURPOSE = "Evaluating an OpenAI-compatible endpoint"


class Transient(Exception):
    """A failure worth retrying after a pause (connection, timeout, 429, 5xx)."""


class RequestFailed(Exception):
    """A request the endpoint refused (a 4xx other than the retried ones): asking again gets the same answer."""


def http_client(base_url: str, api_key: str | None, timeout_s: float, connect_s: float = 10.0):
    """An httpx client for the API at `base_url`, the key (if any) in its Authorization header only; the URL's
    user:password is sent as HTTP basic auth (httpx) and its ?query on every request, after the path."""
    httpx = require("httpx", PURPOSE, "eval")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base, _, query = base_url.partition("#")[0].partition("?")
    return httpx.Client(base_url=base.rstrip("/") + "/", headers=headers, params=httpx.QueryParams(query),
                        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, connect_s)))


def post_chat(http, body: dict, redact: Callable[[str], str] = str) -> str:
    """One chat completion: the reply's message content, and the calls of a server that parsed them out of the
    text (`tool_calls`) written after it as a JSON list of {"name", "arguments"}, the form a tool_call scorer
    parses. Raises Transient (retry it) or RequestFailed; every message is passed through `redact` (a hostile
    server may echo the key back)."""
    message = chat_choice(http, body, redact)["message"]
    text = message["content"] or ""
    try:
        calls = [ToolCall.from_openai(c) for c in message.get("tool_calls") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Transient(redact(f"a reply's tool_calls are not OpenAI calls: {message.get('tool_calls')!r:.80}")) from None
    if calls:
        text = (text + "\n" if text else "") + json.dumps([{"name": c.name, "arguments": c.arguments} for c in calls])
    return text


def chat_choice(http, body: dict, redact: Callable[[str], str] = str) -> dict:
    """One chat completion's first choice (its message, and logprobs when asked for), as post_chat."""
    httpx = require("httpx", PURPOSE, "eval")
    try:
        resp = http.post("chat/completions", json=body)
    except httpx.TimeoutException:
        raise Transient(f"timed out after {http.timeout.read:g}s") from None
    except httpx.TransportError as exc:
        raise Transient(f"cannot reach the endpoint ({type(exc).__name__})") from None
    if resp.status_code >= 500 or resp.status_code in RETRY_STATUS:
        raise Transient(redact(f"HTTP {resp.status_code}: {resp.text.strip()[:160]}"))
    if resp.status_code >= 400:
        raise RequestFailed(redact(f"HTTP {resp.status_code} (not retried): {resp.text.strip()[:300]}"))
    try:
        choice = resp.json()["choices"][0]
        choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise Transient(redact(f"not a chat completion reply: {resp.text.strip()[:80]!r}")) from None
    return choice


def api_key_from(env_var: str | None, option: str = "--endpoint-key-env") -> str | None:
    """The key in `env_var` (None when no variable is named); EnvironmentProblem naming the option and a variable
    that is unset."""
    if not env_var:
        return None
    value = os.environ.get(env_var)
    if not value:
        raise EnvironmentProblem(f"{option}: the environment variable {env_var} is not set")
    return value


def served_models(base_url: str, api_key: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> list[str]:
    """The model ids GET /models lists; EnvironmentProblem (exit 4, one line) when nothing answers as an
    OpenAI-compatible API there."""
    httpx = require("httpx", PURPOSE, "eval")
    where = public_url(base_url)
    redact = (lambda s: s.replace(api_key, "***")) if api_key else str
    try:
        with http_client(base_url, api_key, timeout_s, connect_s=timeout_s) as http:
            resp = http.get("models")
    except httpx.TimeoutException:
        raise EnvironmentProblem(f"endpoint {where}: no answer within {timeout_s:g} s (GET /models)") from None
    except (httpx.TransportError, httpx.InvalidURL, ValueError) as exc:
        raise EnvironmentProblem(f"endpoint {where}: cannot reach it ({redact_urls(redact(str(exc))) or type(exc).__name__})"
                                 ) from None
    if resp.status_code in (401, 403):
        raise EnvironmentProblem(f"endpoint {where}: HTTP {resp.status_code} for GET /models (a key is needed, or "
                                 "the one in --endpoint-key-env is refused)")
    if resp.status_code != 200:
        raise EnvironmentProblem(f"endpoint {where}: GET /models answered HTTP {resp.status_code}; is this the "
                                 "OpenAI-compatible base URL (usually ending in /v1)?")
    try:
        return [str(m["id"]) for m in resp.json().get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise EnvironmentProblem(f"endpoint {where}: GET /models is not an OpenAI model list") from None


class EndpointRuntime(Runtime):
    key = "endpoint"
    label = "endpoint"
    lm_eval_name = "local-completions"
    cacheable = False  # what a URL serves can change without the URL changing

    def __init__(self, ckpt: Checkpoint, options: RuntimeOptions | None = None):
        super().__init__(ckpt, options)
        info = ckpt.extra["endpoint"]
        self.base_url, self.model = ckpt.path, info["model"]
        self._api_key = api_key_from(self.options.endpoint_key_env)
        self._http_client = None
        self._lock = threading.Lock()

    # ---- a URL is a checkpoint of its own

    @classmethod
    def claims(cls, ref: str) -> bool:
        return str(ref).startswith(SCHEMES)

    @classmethod
    def resolve(cls, ref: str, options: RuntimeOptions) -> Checkpoint:
        """The endpoint as a checkpoint record, checked to answer (the key's variable set, GET /models)."""
        if not options.endpoint_model:
            raise BadInput(f"checkpoint '{public_url(ref)}' is an endpoint: name the served model with "
                           "--endpoint-model NAME (GET /models lists them)")
        key = api_key_from(options.endpoint_key_env)
        listed = served_models(ref, key)
        base_url = ref.rstrip("/")
        ckpt = Checkpoint(path=base_url, name=options.endpoint_model, kind="served", format="endpoint",
                          extra={"endpoint": {"base_url": public_url(base_url), "model": options.endpoint_model,
                                              "api_key_env": options.endpoint_key_env, "listed_models": listed}})
        return ckpt

    @classmethod
    def serves(cls, ckpt: Checkpoint) -> bool:
        return ckpt.format == "endpoint"

    @classmethod
    def check(cls, ckpt: Checkpoint, options: RuntimeOptions) -> None:
        if ckpt.format != "endpoint":
            raise BadInput(f"backend endpoint runs a served model given by its URL; '{ckpt.path}' is a "
                           f"{ckpt.format} checkpoint")
        api_key_from(options.endpoint_key_env)

    # ---- generation

    def chat_format(self):
        from workbench.chat.format import ChatFormat

        return ChatFormat(None)  # the server applies its own template and stops where it says

    def _http(self):
        with self._lock:
            if self._http_client is None:
                self._http_client = http_client(self.base_url, self._api_key, REQUEST_TIMEOUT_S)
            return self._http_client

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def complete(self, body: dict) -> str:
        """One chat completion, retried with backoff where a retry may succeed; EnvironmentProblem for good."""
        problem = ""
        for attempt in range(RETRIES + 1):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                return post_chat(self._http(), body, self._redact)
            except Transient as exc:
                problem = str(exc)
            except RequestFailed as exc:
                problem = str(exc)
                break
        raise EnvironmentProblem(f"endpoint {public_url(self.base_url)} ({self.model}): {problem}")

    def generate(self, conversations, spec, *, progress=None, tools=None) -> list[str]:
        variables = thinking_variables(spec.thinking)

        def one(conversation, functions):
            # vLLM's and llama.cpp's servers pass chat_template_kwargs to the template (enable_thinking)
            body = {"model": self.model, "messages": conversation, "max_tokens": spec.max_new_tokens,
                    "temperature": spec.temperature, "seed": spec.seed, **({"stop": list(spec.stop)} if spec.stop else {}),
                    **({"tools": functions} if functions else {}),
                    **({"chat_template_kwargs": variables} if variables else {}), **self.options.endpoint_args}
            text = cut_at_stop(self.complete(body), spec.stop)
            if progress:
                progress(1)
            return text

        pool = ThreadPoolExecutor(max_workers=max(1, self.options.endpoint_concurrency))
        try:
            return list(pool.map(one, conversations, tools or [None] * len(conversations)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # ---- lm-eval

    def lm_eval_backend(self, chat: bool = False) -> str:
        return "local-chat-completions" if chat else "local-completions"

    def lm_eval_args(self, chat: bool = False) -> dict:
        """One prompt per request (servers such as llama.cpp's take no more), endpoint_concurrency of them at once;
        no tokenizer, so lm-eval sends text and can run generation tasks only (check_tasks)."""
        path = "chat/completions" if chat else "completions"
        return {"model": self.model, "base_url": public_url(url_under(self.base_url, path)), "tokenizer_backend": None,
                "tokenized_requests": False, "batch_size": 1, "num_concurrent": self.options.endpoint_concurrency,
                "max_retries": RETRIES}

    @classmethod
    def check_tasks(cls, output_types: dict[str, str]) -> None:
        scored = sorted(task for task, kind in output_types.items() if kind != "generate_until")
        if scored:
            raise BadInput(f"lm-eval task {', '.join(scored[:3])}{' ...' if len(scored) > 3 else ''} scores "
                           "log-likelihoods, which an endpoint serves without its tokenizer: run generation tasks "
                           "(gsm8k, ...) on an endpoint, and log-likelihood ones on the checkpoint or its GGUF")

    def lm_eval_model(self, *, batch_size: int, device: str, chat: bool = False):
        registry = require("lm_eval.api.registry", PURPOSE, "eval")
        require("tenacity", PURPOSE, "eval")  # lm-eval's API models need it (lm-eval[api])
        require("lm_eval.models.openai_completions", PURPOSE, "eval")
        # the real URL (it may carry credentials) and the key go in here, never into the recorded model_args
        extra = {"base_url": url_under(self.base_url, "chat/completions" if chat else "completions"),
                 **({"header": {"Authorization": f"Bearer {self._api_key}"}} if self._api_key else {})}
        lm_class = registry.get_model(self.lm_eval_backend(chat))
        if self.options.endpoint_args:
            lm_class = _with_fields(lm_class, self.options.endpoint_args)
        return lm_class.create_from_arg_obj({**self.lm_eval_args(chat), **extra})

    def describe(self) -> dict:
        return {"runtime": self.label, "backend": self.key, "base_url": public_url(self.base_url),
                "model": self.model, "api_key": "set" if self._api_key else "none",
                **({"request_fields": self.options.endpoint_args} if self.options.endpoint_args else {})}

    def close(self) -> None:
        with self._lock:
            if self._http_client is not None:
                self._http_client.close()
                self._http_client = None


def _with_fields(lm_class, fields: dict):
    """lm-eval's API model whose every request carries `fields` too (--endpoint-args), as the task generations'
    requests do."""

    class WithFields(lm_class):
        def _create_payload(self, *args, **kwargs) -> dict:
            return {**super()._create_payload(*args, **kwargs), **fields}

    return WithFields

"""Which judge a run talks to: an external OpenAI-compatible endpoint when the suite names a base_url, otherwise
llama.cpp's server started on loopback for a GGUF file, on first use, and stopped when the session closes."""

import contextlib
import os
from pathlib import Path

from workbench.config import JudgeSpec
from workbench.errors import BadInput, EnvironmentProblem
from workbench.judge.cache import JudgeCache
from workbench.judge.client import Endpoint, JudgeClient

LOCAL_ALIAS = "judge"


def local_gguf(spec: JudgeSpec) -> Path:
    if spec.model == "default":
        from workbench.checkpoints.default_model import default_gguf_path

        return default_gguf_path()
    path = Path(spec.model).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise BadInput(f"judge.model '{spec.model}': without judge.base_url the judge runs locally and needs "
                       "'default' or a .gguf file")
    return path


def api_key(spec: JudgeSpec) -> str | None:
    if not spec.api_key_env:
        return None
    value = os.environ.get(spec.api_key_env)
    if not value:
        raise EnvironmentProblem(f"judge.api_key_env: the environment variable {spec.api_key_env} is not set")
    return value


def check_judge(spec: JudgeSpec) -> None:
    """Before any model loads: the key's variable is set, the local GGUF exists and the server can start."""
    api_key(spec)
    if spec.base_url is None:
        from workbench.runtimes.llamacpp.server import check_server_extra

        local_gguf(spec)
        check_server_extra()
    elif not spec.base_url.startswith(("http://", "https://")):
        raise BadInput(f"judge.base_url '{spec.base_url}': expected an http(s) URL")


class JudgeSession:
    """The judge client for a run. A local server is started only when a verdict is not already cached."""

    def __init__(self, spec: JudgeSpec, cache: JudgeCache | None = None):
        self.spec = spec
        self.cache = cache if cache is not None else JudgeCache()
        self._stack = contextlib.ExitStack()
        self._client: JudgeClient | None = None
        self.server_started = False

    @property
    def client(self) -> JudgeClient:
        if self._client is None:
            self._client = self._stack.enter_context(self._make_client())
        return self._client

    def _make_client(self) -> JudgeClient:
        spec, mode = self.spec, self.spec.response_format
        if spec.base_url:
            endpoint = Endpoint(spec.base_url, spec.model, spec.model, "json_schema" if mode == "auto" else mode,
                                api_key(spec))
            return JudgeClient(endpoint, spec, self.cache)
        from workbench.data.records import sha256_file
        from workbench.runtimes.llamacpp.model import gguf_chat_format

        gguf = local_gguf(spec)
        # llama-cpp-python's server takes a schema inside response_format json_object (not json_schema)
        endpoint = Endpoint("", LOCAL_ALIAS, f"gguf-sha256:{sha256_file(gguf)}",
                            "json_object" if mode == "auto" else mode, api_key(spec))
        formats = []

        def start() -> str:
            # Read while the client's lock holds the other workers: llama-cpp-python points fds 1 and 2 at
            # /dev/null while it loads a vocabulary, and two threads doing so at once can leave them there.
            url = self._start_server(gguf)  # first: a file llama.cpp cannot load fails as the server's exit
            formats.append(gguf_chat_format(gguf))
            return url

        return JudgeClient(endpoint, spec, self.cache, start=start, prepare=lambda m: formats[0].messages(m))

    def _start_server(self, gguf: Path) -> str:
        from workbench.runtimes.llamacpp.server import local_server

        url = self._stack.enter_context(local_server(gguf, n_ctx=self.spec.n_ctx, alias=LOCAL_ALIAS))
        self.server_started = True
        return url

    def summary(self) -> dict:
        if self._client is None:
            return {"started": False}
        where = self._client.endpoint.describe()
        if not self.spec.base_url:
            where["base_url"] = "local llama.cpp server on 127.0.0.1"
            where["gguf"] = str(local_gguf(self.spec))
            where["server_started"] = self.server_started
        return {"started": True, "endpoint": where, **self._client.counters.to_dict()}

    def close(self) -> None:
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

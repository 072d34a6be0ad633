"""The two sides of a canary: each an OpenAI-compatible server the router forwards to. A URL (http://.../v1) is used
as it is (checked to answer GET /models before anything is written, its key read from an environment variable);
a GGUF file, `default` or a wb checkpoint reference that resolves to a GGUF is served by llama.cpp's server
(workbench.runtimes.llamacpp.server), started on loopback for as long as the canary runs."""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import BadInput, EnvironmentProblem
from workbench.runtimes.endpoint import SCHEMES, api_key_from, served_models
from workbench.system.urls import public_url, url_under


@dataclass
class Upstream:
    role: str
    """baseline or candidate."""
    ref: str
    """What the user gave."""
    base_url: str | None = None
    """The API's base URL (a GGUF's once its server is up)."""
    gguf: Path | None = None
    model: str | None = None
    """The model name every forwarded request carries (the client's is replaced)."""
    api_key: str | None = None

    @property
    def chat_url(self) -> str:
        return url_under(self.base_url, "chat/completions")

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def redact(self, text: str) -> str:
        """A message fit to print or log: no key (a server may echo it), no URL credentials or query."""
        from workbench.system.urls import redact_urls

        return redact_urls(text.replace(self.api_key, "***") if self.api_key else text)

    def describe(self) -> dict:
        if self.gguf is not None:
            return {"gguf": str(self.gguf), "runtime": "llama.cpp server", "model": self.model}
        return {"base_url": public_url(self.base_url or self.ref), "model": self.model,
                "api_key": "set" if self.api_key else "none"}


def resolve_upstream(ref: str, role: str, *, model: str | None = None, key_env: str | None = None) -> Upstream:
    """Check a side before anything is written: BadInput (exit 3) for a reference that is no GGUF, URL or
    checkpoint that resolves to a GGUF; EnvironmentProblem (exit 4) for a URL that does not answer or an unset key
    variable, or llama.cpp's server missing."""
    option = f"--{role}"
    if str(ref).startswith(SCHEMES):
        key = api_key_from(key_env, f"--{role}-key-env")
        try:
            listed = served_models(ref, key)
        except EnvironmentProblem as exc:
            raise EnvironmentProblem(f"{option}: {exc}") from None
        if not model and not listed:
            raise BadInput(f"{option} {public_url(ref)}: GET /models lists no model; name one with --{role}-model")
        return Upstream(role, ref, base_url=ref.rstrip("/"), model=model or listed[0], api_key=key)
    if key_env:
        raise BadInput(f"--{role}-key-env applies to an upstream URL; {option} '{ref}' is served here")
    from workbench.runtimes.llamacpp.server import check_server_extra

    gguf = _gguf_of(ref, option)
    check_server_extra()
    return Upstream(role, str(ref), gguf=gguf, model=role)


def _gguf_of(ref: str, option: str) -> Path:
    from workbench.checkpoints.default_model import default_gguf_path, is_default_model
    from workbench.checkpoints.resolve import resolve_checkpoint

    if is_default_model(ref):
        return default_gguf_path()
    try:
        ckpt = resolve_checkpoint(ref, with_sha=False)
    except BadInput as exc:
        raise BadInput(f"{option}: {exc}") from None
    if ckpt.format != "gguf":
        raise BadInput(f"{option} '{ref}' is a {ckpt.format} {ckpt.kind} checkpoint: wb serve runs a GGUF on "
                       "llama.cpp's server (wb export it to GGUF), or give the URL of a server that runs it")
    return Path(ckpt.path)


@contextlib.contextmanager
def started(upstreams: list[Upstream], *, n_ctx: int, threads: int | None):
    """Start llama.cpp's server for every GGUF side (stopped on exit, error or Ctrl-C); URL sides are left as they
    are."""
    from workbench.runtimes.llamacpp.server import local_server

    with contextlib.ExitStack() as stack:
        for up in upstreams:
            if up.gguf is not None:
                up.base_url = stack.enter_context(local_server(up.gguf, n_ctx=n_ctx, threads=threads, alias=up.role))
        yield upstreams

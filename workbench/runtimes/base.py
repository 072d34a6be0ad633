"""The runtime protocol: one checkpoint, loaded once, in the runtime that serves it, the way lm-evaluation-harness's
`LM` is one object for every task.

A runtime
- generates answers for a batch of conversations, stopping where the checkpoint's ChatFormat says a turn ends
  (`generate`; task evals, the judge's local model, sweeps, evals during training);
- hands lm-eval a model object for the same checkpoint (`lm_eval_model`, with the `lm_eval_args` that a run records
  and its result cache keys on);
- describes itself for a run's manifest (`describe`);
- where it can, works at the token level for export verification: the prompt tokens its chat template makes, a
  greedy continuation, next-token logits (`prompt_tokens`, `greedy_tokens`, `logits`).

Nothing loads until it is needed, so a runtime can be opened (and checked) before a run starts, and one that only
hands lm-eval its arguments never loads weights itself. `close()` frees what it loaded.
"""

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput

DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")


@dataclass
class RuntimeOptions:
    """How to run a checkpoint: which runtime (`backend`: auto picks by the checkpoint) and its settings."""

    backend: str = "auto"
    dtype: str = "float32"  # lm-eval's and vLLM's weights; transformers' task generations are float32
    device: str = "auto"
    vllm_args: dict = field(default_factory=dict)  # vLLM engine arguments (--vllm-args)
    endpoint_model: str | None = None  # an endpoint's served model name (--endpoint-model)
    endpoint_key_env: str | None = None  # the variable holding an endpoint's API key (--endpoint-key-env)
    endpoint_args: dict = field(default_factory=dict)  # extra fields of every request to an endpoint
    endpoint_concurrency: int = 4

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise BadInput(f"--dtype '{self.dtype}': expected one of {', '.join(DTYPES)}")

    @classmethod
    def from_run_options(cls, opts: dict | None) -> "RuntimeOptions":
        """From an eval's run options (eval.request.run_options): the keys that are a runtime's."""
        opts = opts or {}
        known = {k: opts[k] for k in cls.__dataclass_fields__ if opts.get(k) is not None}
        return cls(**known)


class Runtime(ABC):
    """A checkpoint in the runtime that serves it. Subclasses set the class attributes and the abstract methods;
    the token-level methods are for runtimes that export verification measures files in."""

    key: ClassVar[str]  # the --backend value that picks it
    label: ClassVar[str]  # what a manifest, the matrix and messages call it
    lm_eval_name: ClassVar[str]  # the model name in lm-eval's registry its lm_eval_model() is
    cacheable: ClassVar[bool] = True  # lm-eval's result and request caches may answer for it (weights by sha)

    def __init__(self, ckpt: Checkpoint, options: RuntimeOptions | None = None):
        self.checkpoint = ckpt
        self.options = options or RuntimeOptions()

    # ---- choosing and checking

    @classmethod
    def serves(cls, ckpt: Checkpoint) -> bool:
        """Whether `--backend auto` runs this checkpoint here."""
        return False

    @classmethod
    def check(cls, ckpt: Checkpoint, options: RuntimeOptions) -> None:
        """Raise BadInput / EnvironmentProblem for what this runtime cannot run, before a run opens."""

    @classmethod
    def check_tasks(cls, output_types: dict[str, str]) -> None:
        """Raise BadInput for lm-eval tasks (name -> output_type) this runtime cannot answer, before a run opens."""

    # ---- what every runtime does

    @abstractmethod
    def chat_format(self):
        """The checkpoint's ChatFormat (workbench.chat.format), derived once per resolved checkpoint."""

    @abstractmethod
    def generate(self, conversations: list[list[dict]], spec, *, progress: Callable[[int], None] | None = None,
                 tools: list[list[dict] | None] | None = None) -> list[str]:
        """One answer per conversation, as `spec` (config.GenerationSpec) asks: greedy at temperature 0, else
        sampled with spec.seed (the runner asks n times, seed + i, for spec.n answers per item). `tools`: each
        conversation's function specs (OpenAI's shape; None for none), rendered by the checkpoint's template or
        sent with the request; spec.thinking reaches the template as `enable_thinking`."""

    def lm_eval_backend(self, chat: bool = False) -> str:
        """The lm-eval model name lm_eval_model() is (`chat`: lm-eval applies a chat template)."""
        return self.lm_eval_name

    @abstractmethod
    def lm_eval_args(self, chat: bool = False) -> dict:
        """lm-eval's model_args for this checkpoint: recorded in a run, part of lm-eval's cache keys."""

    @abstractmethod
    def lm_eval_model(self, *, batch_size: int, device: str, chat: bool = False):
        """lm-eval's model object (an lm_eval.api.model.LM) for this checkpoint."""

    def chat_template(self) -> str | None:
        """The chat template the model is prompted with, as text (None: not known here)."""
        return None

    def chat_template_sha(self) -> str | None:
        template = self.chat_template()
        return hashlib.sha256(template.encode()).hexdigest() if template else None

    def device(self) -> str:
        """Where it computes ('auto' resolved)."""
        return "cpu"

    def versions(self) -> list[str]:
        """The distributions whose versions its numbers depend on."""
        return []

    def describe(self) -> dict:
        """What a run's manifest keeps about the runtime."""
        return {"runtime": self.label, "backend": self.key, "device": self.device()}

    def close(self) -> None:
        """Free what was loaded; the runtime may be used again (it loads again)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- token level (export verification); runtimes that do not measure files leave these

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        """The token ids the chat template makes of `messages`, generation prompt included."""
        raise NotImplementedError(f"{self.label} does not work at the token level")

    def stop_token_ids(self, chat_format=None) -> set[int]:
        """The vocabulary ids of a ChatFormat's stop tokens (default: this checkpoint's own)."""
        raise NotImplementedError(f"{self.label} does not work at the token level")

    def greedy_tokens(self, prompt: list[int], max_tokens: int, stop_ids) -> tuple[list[int], int | None]:
        """The greedy continuation of `prompt` (ids before the stop), and the token that stopped it (None when
        max_tokens ran out first)."""
        raise NotImplementedError(f"{self.label} does not work at the token level")

    def logits(self) -> Callable:
        """fn(ids) -> next-token logits at every position of `ids` ([len(ids), vocab])."""
        raise NotImplementedError(f"{self.label} does not work at the token level")

    def tokens_per_second(self, prompt: list[int]) -> float:
        """Greedy decoding speed after `prompt`, in tokens per second."""
        raise NotImplementedError(f"{self.label} does not time generation")


def cut_at_stop(text: str, stops: list[str]) -> str:
    """The answer before the first of `stops` (a task's stop strings), stripped: every runtime's generate returns
    its answers through this, so that the same tokens give the same text in each."""
    for stop in stops:
        pos = text.find(stop)
        if pos >= 0:
            text = text[:pos]
    return text.strip()

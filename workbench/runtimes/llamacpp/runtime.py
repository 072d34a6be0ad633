"""The llama.cpp runtime object: a GGUF file loaded once in llama.cpp and chatted with the way it will be served,
with the chat template embedded in the file; lm-eval gets wb's in-process llama.cpp model (harness_lm.py).

A LoRA GGUF (an adapter exported with `--adapter-gguf`) runs on the base GGUF shipped beside it, as Ollama's
FROM + ADAPTER serves it."""

from functools import partial
from pathlib import Path

from workbench.chat.template import thinking_variables
from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.runtimes.base import Runtime, RuntimeOptions, cut_at_stop
from workbench.runtimes.llamacpp import model as llamacpp
from workbench.system.extras import require

N_CTX = 2048  # task generations' context; export verification asks for what its windows need


class LlamaCppRuntime(Runtime):
    key = "llamacpp"
    label = "llama.cpp"
    lm_eval_name = "wb-llamacpp"

    def __init__(self, ckpt: Checkpoint, options: RuntimeOptions | None = None, *, n_ctx: int = N_CTX,
                 logits_all: bool = False):
        super().__init__(ckpt, options)
        self.n_ctx, self.logits_all = n_ctx, logits_all
        self._llm = None

    @classmethod
    def serves(cls, ckpt: Checkpoint) -> bool:
        return ckpt.format == "gguf"

    @classmethod
    def check(cls, ckpt: Checkpoint, options: RuntimeOptions) -> None:
        if ckpt.format != "gguf":
            raise BadInput(f"backend llamacpp runs GGUF files; checkpoint '{ckpt.path}' is {ckpt.format}")

    @property
    def llm(self):
        if self._llm is None:
            path, lora = Path(self.checkpoint.path), None
            if self.checkpoint.kind == "adapter":  # base GGUF + LoRA GGUF
                path, lora = path.parent / self.checkpoint.extra["base_gguf"], self.checkpoint.path
            self._llm = llamacpp.load_gguf(path, n_ctx=self.n_ctx, logits_all=self.logits_all, lora_path=lora)
        return self._llm

    def chat_format(self):
        ckpt = self.checkpoint
        if "chat_format" not in ckpt.derived:
            ckpt.derived["chat_format"] = llamacpp.gguf_chat_format(ckpt.path)
        return ckpt.derived["chat_format"]

    def generate(self, conversations, spec, *, progress=None, tools=None) -> list[str]:
        """Greedy answers decode spec.batch_size conversations per llama.cpp call; sampling (temperature > 0) goes
        one conversation at a time through llama-cpp-python's own sampler. The GGUF's own template renders each
        conversation's tools and spec.thinking's variables."""
        chat_format, llm = self.chat_format(), self.llm
        formatter = llamacpp.chat_formatter(llm, chat_format, thinking_variables(spec.thinking))
        messages = [chat_format.messages(conv) for conv in conversations]
        tools = tools or [None] * len(messages)
        if spec.temperature == 0:
            outputs = llamacpp.chat_batched(llm, formatter, messages, spec.max_new_tokens, spec.stop or None,
                                            n_parallel=spec.batch_size, progress=progress, tools=tools)
            return [cut_at_stop(o, spec.stop) for o in outputs]
        llm.chat_handler = formatter.to_chat_handler()
        outputs = []
        for conv, functions in zip(messages, tools):
            outputs.extend(llamacpp.chat(llm, [conv], max_tokens=spec.max_new_tokens, stop=spec.stop or None,
                                         temperature=spec.temperature, seed=spec.seed, tools=functions))
            if progress:
                progress(1)
        return [cut_at_stop(o, spec.stop) for o in outputs]

    def lm_eval_args(self, chat: bool = False) -> dict:
        return {"model_path": str(self.checkpoint.path)}

    def lm_eval_model(self, *, batch_size: int, device: str, chat: bool = False):
        registry = require("lm_eval.api.registry", "Evaluating a GGUF file with lm-eval", "eval")
        import workbench.runtimes.llamacpp.harness_lm  # noqa: F401  (registers the model name)

        return registry.get_model(self.lm_eval_name).create_from_arg_obj(
            self.lm_eval_args(), {"batch_size": batch_size, "max_batch_size": None, "device": device})

    def chat_template(self) -> str | None:
        return llamacpp.gguf_metadata(self.checkpoint.path).get("chat_template")

    def device(self) -> str:
        return "cpu"  # wb loads GGUF files without GPU offload

    def versions(self) -> list[str]:
        return ["llama-cpp-python"]

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()  # here, not at interpreter exit, where llama_cpp's finalizer fails noisily
            self._llm = None

    # ---- token level

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        return llamacpp.chat_prompt_tokens(self.llm, messages)

    def stop_token_ids(self, chat_format=None) -> set[int]:
        return llamacpp.stop_token_ids(self.llm, (chat_format or self.chat_format()).stop_tokens)

    def greedy_tokens(self, prompt: list[int], max_tokens: int, stop_ids) -> tuple[list[int], int | None]:
        return llamacpp.greedy_tokens(self.llm, prompt, max_tokens, stop_ids)

    def logits(self):
        return partial(llamacpp.sequence_logits, self.llm)

    def tokens_per_second(self, prompt: list[int]) -> float:
        return llamacpp.generation_speed(self.llm, prompt)

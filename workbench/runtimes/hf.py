"""The transformers runtime: loading resolved checkpoints into transformers (an HF folder, or base + PEFT adapter,
unmerged), and the runtime object that generates with them and hands lm-eval its `hf` model."""

from pathlib import Path

from workbench.chat.format import from_tokenizer, generation_eos_ids, hf_token_ids
from workbench.chat.template import thinking_variables
from workbench.checkpoints.checkpoint import Checkpoint, require_base
from workbench.errors import BadInput, EnvironmentProblem
from workbench.runtimes.base import Runtime, RuntimeOptions, cut_at_stop
from workbench.store.files import read_json
from workbench.system.extras import peft_without_gptqmodel, require


def load_tokenizer(ckpt: Checkpoint):
    """The checkpoint's tokenizer, with the chat template chosen for it (Checkpoint.chosen_template) if any."""
    tok = load_tokenizer_from(ckpt.tokenizer_source)
    if ckpt.chosen_template is not None:
        tok.chat_template = ckpt.chosen_template.text
    return tok


def load_tokenizer_from(folder):
    transformers = require("transformers", "Loading a tokenizer", "eval")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(ckpt: Checkpoint, *, dtype: str = "float32", device: str = "cpu", as_trained: bool = True,
               prepare_base=None):
    """A transformers causal LM for an HF checkpoint, or base + PEFT adapter (unmerged) for an adapter.

    An adapter trained on a quantized base (QLoRA) loads on that base quantized the same way, unless
    `as_trained=False` (the full-precision base: `wb merge --into fp`). `prepare_base`: called with a
    full-precision base before the adapter goes on it (wb merge --into dequantized rounds it)."""
    if ckpt.format == "gguf":
        raise BadInput(f"checkpoint '{ckpt.path}': GGUF files run in llama.cpp, not transformers")
    torch = require("torch", "Loading a model", "eval")
    transformers = require("transformers", "Loading a model", "eval")
    torch_dtype = getattr(torch, dtype)
    if ckpt.kind == "adapter":
        peft = require("peft", "Loading an adapter", "train")
        from workbench.checkpoints.quantization import load_quantized, quantization_of

        quantization = quantization_of(ckpt) if as_trained else None
        if quantization:
            model = load_quantized(require_base(ckpt).path, quantization, device)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(str(require_base(ckpt).path), dtype=torch_dtype)
            if prepare_base:
                prepare_base(model)
        from workbench.checkpoints.adapter_vocab import resize_base_for

        resize_base_for(model, ckpt.path)  # an adapter that added tokens needs as many embedding rows
        with peft_without_gptqmodel():
            model = peft.PeftModel.from_pretrained(model, str(ckpt.path))
        if quantization:  # bitsandbytes placed it already; .to() is refused for 4/8-bit weights
            model.eval()
            return model
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(ckpt.path), dtype=torch_dtype)
    model.to(device)
    model.eval()
    return model


# ---------------------------------------------------------------- the runtime

PURPOSE = "Running a checkpoint in transformers"


class HFRuntime(Runtime):
    """transformers: an HF folder, base + PEFT adapter (unmerged; a QLoRA adapter on its base quantized as in
    training), or an AWQ/GPTQ folder. Task generations load the model once, float32 on the CPU; lm-eval's `hf`
    model loads its own copy at --dtype on --device, unless the runtime was given a model in memory (`model`:
    the one being trained, or one a sweep loaded to share), which both then use."""

    key = "hf"
    label = "transformers"
    lm_eval_name = "hf"

    def __init__(self, ckpt: Checkpoint, options: RuntimeOptions | None = None, *, model=None):
        super().__init__(ckpt, options)
        self._model = model
        self._shared = model is not None  # lm-eval wraps it instead of loading its own
        self._tokenizer = None

    @classmethod
    def serves(cls, ckpt: Checkpoint) -> bool:
        return ckpt.format in ("hf", "peft", "awq", "gptq")

    @classmethod
    def check(cls, ckpt: Checkpoint, options: RuntimeOptions) -> None:
        if ckpt.format == "gguf":
            raise BadInput(f"checkpoint '{ckpt.path}' is a GGUF file: evaluate it with --backend llamacpp (or auto)")
        resolve_device(options.device)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.checkpoint)
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.checkpoint)
        return self._model

    def chat_format(self):
        ckpt = self.checkpoint
        if "chat_format" not in ckpt.derived:
            model_dir = require_base(ckpt).path if ckpt.kind == "adapter" else ckpt.path
            ckpt.derived["chat_format"] = from_tokenizer(self.tokenizer, generation_eos_ids(model_dir))
        return ckpt.derived["chat_format"]

    def generate(self, conversations, spec, *, progress=None, tools=None) -> list[str]:
        torch = require("torch", "Generation", "eval")
        tokenizer, chat_format, model = self.tokenizer, self.chat_format(), self.model
        tokenizer.padding_side = "left"
        prompts = render_prompts(tokenizer, chat_format, conversations, spec, tools)
        # Sort by length so batches pad little; restore the order at the end.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        outputs: dict[int, str] = {}
        stop_ids = self.stop_ids_list()
        if spec.temperature > 0:
            torch.manual_seed(spec.seed)
        for start in range(0, len(order), spec.batch_size):
            idx = order[start:start + spec.batch_size]
            batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = model.generate(
                    **batch, max_new_tokens=spec.max_new_tokens, do_sample=spec.temperature > 0,
                    temperature=spec.temperature if spec.temperature > 0 else None, top_p=None, top_k=None,
                    eos_token_id=stop_ids or None, pad_token_id=tokenizer.pad_token_id,
                )
            new = gen[:, batch["input_ids"].shape[1]:]
            for i, row in zip(idx, new):
                text = tokenizer.decode(tokens_before_stop(row.tolist(), stop_ids), skip_special_tokens=True)
                outputs[i] = cut_at_stop(text, spec.stop)
            if progress:
                progress(len(idx))
        return [outputs[i] for i in range(len(prompts))]

    def lm_eval_args(self, chat: bool = False) -> dict:
        return hf_model_args(self.checkpoint, self.options.dtype)

    def lm_eval_model(self, *, batch_size: int, device: str, chat: bool = False):
        registry = require("lm_eval.api.registry", PURPOSE, "eval")
        if self._shared:
            return registry.get_model("hf")(pretrained=self._model, tokenizer=load_tokenizer(self.checkpoint),
                                            batch_size=batch_size, device=device)
        model_args = dict(self.lm_eval_args())
        quantization = model_args.pop("base_quantization", None)
        lm_class = registry.get_model("hf") if quantization is None else _quantized_base_hflm(quantization)
        return lm_class.create_from_arg_obj(model_args, {"batch_size": batch_size, "max_batch_size": None,
                                                         "device": device})

    def chat_template(self) -> str | None:
        return read_chat_template(self.checkpoint)

    def device(self) -> str:
        return resolve_device(self.options.device)

    def versions(self) -> list[str]:
        return ["transformers", "torch"] + (["peft"] if self.checkpoint.kind == "adapter" else [])

    def close(self) -> None:
        self._model, self._shared = None, False  # a model handed in stays the caller's

    # ---- token level

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                       return_dict=True)["input_ids"])

    def stop_ids_list(self, chat_format=None) -> list[int]:
        return hf_token_ids(self.tokenizer, (chat_format or self.chat_format()).stop_tokens)

    def stop_token_ids(self, chat_format=None) -> set[int]:
        return set(self.stop_ids_list(chat_format))

    def greedy_tokens(self, prompt: list[int], max_tokens: int, stop_ids) -> tuple[list[int], int | None]:
        torch = require("torch", "Greedy generation", "eval")
        model, stops = self.model, set(stop_ids)
        ids = torch.tensor([prompt], device=next(model.parameters()).device)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False,
                                 eos_token_id=sorted(stops) or None, pad_token_id=self.tokenizer.pad_token_id)
        new = out[0, len(prompt):].tolist()
        cut = next((i for i, t in enumerate(new) if t in stops), None)
        return (new, None) if cut is None else (new[:cut], new[cut])

    def logits(self):
        torch = require("torch", "Computing logits", "eval")
        model = self.model
        device = next(model.parameters()).device

        def run(ids: list[int]):
            with torch.no_grad():
                return model(torch.tensor([ids], device=device)).logits[0].float().cpu().numpy()

        return run


def read_chat_template(ckpt: Checkpoint) -> str | None:
    """The chat template the checkpoint is prompted with: one chosen for it (Checkpoint.chosen_template), else
    its own (own_chat_template)."""
    if ckpt.chosen_template is not None:
        return ckpt.chosen_template.text
    return own_chat_template(ckpt)


def own_chat_template(ckpt: Checkpoint) -> str | None:
    """The checkpoint's own chat template, read from its files (chat_template.jinja or tokenizer_config.json)
    without importing transformers; the tokenizer is loaded only when neither file says."""
    folder = ckpt.tokenizer_source
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = read_json(config).get("chat_template")
        if isinstance(template, list):  # several named templates: the one transformers uses by default
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return template
    template = load_tokenizer_from(folder).chat_template
    return template.get("default") if isinstance(template, dict) else template


def render_prompts(tokenizer, chat_format, conversations: list[list[dict]], spec, tools=None) -> list[str]:
    """Each conversation as the prompt text the model sees: through the chat template (generation prompt added,
    with the conversation's `tools` and spec.thinking's template variables), or without one (spec.chat_template
    false) the turns' contents joined by blank lines."""
    if not spec.chat_template:
        return ["\n\n".join(m["content"] for m in c) for c in conversations]
    variables = thinking_variables(spec.thinking)
    return [tokenizer.apply_chat_template(chat_format.messages(c), add_generation_prompt=True, tokenize=False,
                                          tools=t, **variables)
            for c, t in zip(conversations, tools or [None] * len(conversations))]


def tokens_before_stop(ids: list[int], stops: list[int]) -> list[int]:
    """The tokens before the first stop token (a batch's shorter rows are padded after it)."""
    cut = next((n for n, t in enumerate(ids) if t in stops), len(ids))
    return ids[:cut]


def hf_model_args(ckpt: Checkpoint, dtype: str) -> dict:
    """lm-eval `hf` model_args for a checkpoint: an HF folder, or base + PEFT adapter (unmerged)."""
    if ckpt.format in ("gguf", "exl2", "endpoint"):
        raise BadInput(f"checkpoint '{ckpt.path}': lm-eval's hf backend cannot load {ckpt.format} files")
    if ckpt.kind != "adapter":
        return {"pretrained": str(ckpt.path), "dtype": dtype}
    base = require_base(ckpt)
    if base.format in ("gguf", "exl2"):
        raise BadInput(f"adapter '{ckpt.path}': its base {base.path} is a {base.format} file, not an HF model")
    args = {"pretrained": str(base.path), "peft": str(ckpt.path), "dtype": dtype}
    from workbench.checkpoints.quantization import quantization_of

    if quantization_of(ckpt):  # a QLoRA adapter is scored on its quantized base (lm_eval_model builds it)
        args["base_quantization"] = quantization_of(ckpt)
    if (ckpt.path / "tokenizer_config.json").exists():  # trained with its own tokenizer (added tokens, template)
        args["tokenizer"] = str(ckpt.path)
    return args


def _quantized_base_hflm(quantization: dict):
    """lm-eval's HFLM with the adapter's base loaded through bitsandbytes as in training (QLoRA): HFLM takes a
    quantization config only from the model's own config.json, and transformers 5 dropped load_in_4bit."""
    huggingface = require("lm_eval.models.huggingface", PURPOSE, "eval")
    from workbench.checkpoints.quantization import bnb_config

    class QuantizedBaseHFLM(huggingface.HFLM):
        def _create_model(self, *args, quantization_config=None, **kwargs):
            return super()._create_model(*args, quantization_config=bnb_config(quantization), **kwargs)

    return QuantizedBaseHFLM


def resolve_device(device: str | None) -> str:
    """'auto': cuda when torch sees a GPU, else cpu."""
    if device in (None, "", "auto"):
        if not _torch_built_with_gpu():  # a CPU-only torch build: no need to import torch (seconds) to know
            return "cpu"
        torch = require("torch", PURPOSE, "eval")
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch = require("torch", PURPOSE, "eval")
        if not torch.cuda.is_available():
            raise EnvironmentProblem(f"device '{device}': torch sees no CUDA GPU on this machine (use --device cpu)")
    return device


def _torch_built_with_gpu() -> bool:
    """Whether the installed torch was built with CUDA or ROCm, read from torch/version.py without importing it."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version_py = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    if not version_py.is_file():
        return True  # can't tell: ask torch itself
    text = version_py.read_text(encoding="utf-8")
    builds = re.findall(r"^(?:cuda|hip)\s*(?::[^=]*)?=\s*(.+)$", text, flags=re.MULTILINE)
    return not builds or any(value.strip() != "None" for value in builds)

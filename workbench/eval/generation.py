"""Greedy batched generation for chat items: transformers for HF checkpoints and adapters, llama.cpp for GGUF,
vLLM when the eval runs on it (an adapter as a LoRA request on its base's engine). Each stops where the
checkpoint's ChatFormat says an assistant turn ends."""

from workbench.chat.format import for_checkpoint, hf_token_ids
from workbench.checkpoints.checkpoint import Checkpoint
from workbench.config import GenerationSpec
from workbench.system.extras import require


def generate(ckpt: Checkpoint, conversations: list[list[dict]], spec: GenerationSpec, *, progress=None,
             run_options: dict | None = None) -> list[str]:
    """`run_options` are the eval's (request.run_options); only --backend vllm changes where HF checkpoints
    run, on an engine of --dtype and --vllm-args (transformers task generations are float32)."""
    if ckpt.format == "gguf":
        return _generate_gguf(ckpt, conversations, spec, progress=progress)
    from workbench.eval.harness import VLLM, backend_model_args, resolve_backend

    opts = run_options or {}
    if resolve_backend(opts.get("backend", "auto"), ckpt) == VLLM:
        model_args = backend_model_args(VLLM, ckpt, opts.get("dtype", "float32"), opts.get("vllm_args"))
        return _generate_vllm(ckpt, conversations, spec, model_args, progress=progress)
    return _generate_hf(ckpt, conversations, spec, progress=progress)


def _generate_gguf(ckpt: Checkpoint, conversations, spec: GenerationSpec, *, progress=None) -> list[str]:
    """Greedy answers decode spec.batch_size conversations per llama.cpp call; sampling (temperature > 0) goes
    one conversation at a time through llama-cpp-python's own sampler."""
    from workbench.runtimes.llamacpp.model import chat, chat_batched, chat_formatter, load_gguf

    chat_format = for_checkpoint(ckpt)
    llm = load_gguf(ckpt.path)
    try:
        formatter = chat_formatter(llm, chat_format)
        messages = [chat_format.messages(conv) for conv in conversations]
        if spec.temperature == 0:
            return chat_batched(llm, formatter, messages, spec.max_new_tokens, spec.stop or None,
                                n_parallel=spec.batch_size, progress=progress)
        llm.chat_handler = formatter.to_chat_handler()
        outputs = []
        for conv in messages:
            outputs.extend(chat(llm, [conv], max_tokens=spec.max_new_tokens, stop=spec.stop or None,
                                temperature=spec.temperature))
            if progress:
                progress(1)
        return outputs
    finally:
        llm.close()  # closed here, not at interpreter exit, where llama_cpp's finalizer fails noisily


def _generate_hf(ckpt: Checkpoint, conversations, spec: GenerationSpec, *, progress=None) -> list[str]:
    torch = require("torch", "Generation", "eval")
    from workbench.runtimes.hf import load_model, load_tokenizer

    tokenizer = load_tokenizer(ckpt)
    tokenizer.padding_side = "left"
    chat_format = for_checkpoint(ckpt, tokenizer)
    model = load_model(ckpt)
    prompts = _prompts(tokenizer, chat_format, conversations, spec)
    # Sort by length so batches pad little; restore the order at the end.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: dict[int, str] = {}
    stop_ids = hf_token_ids(tokenizer, chat_format.stop_tokens)
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
            outputs[i] = _cut_at_stop(tokenizer.decode(_until(row.tolist(), stop_ids), skip_special_tokens=True),
                                      spec.stop)
        if progress:
            progress(len(idx))
    return [outputs[i] for i in range(len(prompts))]


def _generate_vllm(ckpt: Checkpoint, conversations, spec: GenerationSpec, model_args: dict, *,
                   progress=None) -> list[str]:
    """The same prompt tokens, stop tokens and cut as the transformers path, decoded on the vLLM engine."""
    from workbench.runtimes import vllm_engine
    from workbench.runtimes.hf import load_tokenizer

    tokenizer = load_tokenizer(ckpt)
    chat_format = for_checkpoint(ckpt, tokenizer)
    prompts = _prompts(tokenizer, chat_format, conversations, spec)
    token_prompts = tokenizer(prompts, add_special_tokens=False).input_ids
    stop_ids = hf_token_ids(tokenizer, chat_format.stop_tokens)
    sampling = dict(temperature=spec.temperature, max_tokens=spec.max_new_tokens, detokenize=False, seed=0)
    if stop_ids:  # as transformers' eos_token_id=stop_ids: the chat format's stops, not the model's own eos
        sampling.update(stop_token_ids=stop_ids, ignore_eos=True)
    outputs = vllm_engine.generate(token_prompts, sampling, model_args=model_args, progress=progress)
    return [_cut_at_stop(tokenizer.decode(_until(ids, stop_ids), skip_special_tokens=True), spec.stop)
            for ids in outputs]


def _prompts(tokenizer, chat_format, conversations, spec: GenerationSpec) -> list[str]:
    return [tokenizer.apply_chat_template(chat_format.messages(c), add_generation_prompt=True, tokenize=False)
            if spec.chat_template else "\n\n".join(m["content"] for m in c) for c in conversations]


def _until(ids: list[int], stops: list[int]) -> list[int]:
    """The tokens before the first stop token (a batch's shorter rows are padded after it)."""
    cut = next((n for n, t in enumerate(ids) if t in stops), len(ids))
    return ids[:cut]


def _cut_at_stop(text: str, stops: list[str]) -> str:
    for stop in stops:
        pos = text.find(stop)
        if pos >= 0:
            text = text[:pos]
    return text.strip()

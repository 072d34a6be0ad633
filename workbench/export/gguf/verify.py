"""Verify GGUF files the way they will be served: load each in llama.cpp and measure what the export cost against
the source checkpoint under transformers.

Per file:
- held-out text (quality.py): perplexity, mean KL(source || gguf) and top-1 agreement of next-token
  distributions, llama.cpp's logits vs transformers' on the same token windows, in a stream;
- smoke chats with the file's embedded chat template, greedy: the prompt tokens equal transformers'
  apply_chat_template tokens, the model stops (an end-of-generation token within max tokens), no special
  token leaks into the text, no invented user turn, and the answer equals transformers' greedy answer.
"""

from functools import partial
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.system.extras import require

DEFAULT_PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Give me three tips for staying healthy."}],
    [{"role": "user", "content": "Write a Python function that returns the square of a number."}],
    [{"role": "system", "content": "You answer in one short sentence."}, {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "How do I say goodbye in French?"}],
]
SMOKE_MAX_TOKENS = 192  # room to stop: a smoke chat that runs past this has not stopped


def hf_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def hf_greedy(model, tokenizer, conversations: list[list[dict]], max_tokens: int, stops: set[int]) -> list[list[int]]:
    """Greedy answer token ids per conversation, stopped at the ChatFormat's stop tokens (dropped)."""
    torch = require("torch", "Greedy generation", "eval")
    answers = []
    for messages in conversations:
        ids = torch.tensor([hf_prompt_ids(tokenizer, messages)])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(stops) or None)
        new = out[0, ids.shape[1]:].tolist()
        cut = next((i for i, t in enumerate(new) if t in stops), len(new))
        answers.append(new[:cut])
    return answers


def smoke_chat(llm, tokenizer, messages: list[dict], max_tokens: int, chat_format) -> dict:
    """One greedy chat under llama.cpp with the GGUF's template, stopped where the ChatFormat says (as the
    Modelfile's stop list does), judged on the generated token ids."""
    from workbench.export.hf_quant_verify import judge_chat
    from workbench.runtimes.llamacpp import model as llamacpp

    prompt = llamacpp.chat_prompt_tokens(llm, messages)
    ids, stop = llamacpp.greedy_tokens(llm, prompt, max_tokens, llamacpp.stop_token_ids(llm, chat_format.stop_tokens))
    return {"prompt": prompt, "ids": ids, **judge_chat(tokenizer, ids, stop, chat_format)}


def verify_gguf(artifacts: list[Checkpoint], source: Checkpoint, prompts: list[list[dict]] | None = None,
                max_tokens: int = 48, *, heldout: str | Path | None = None, window: int | None = None,
                max_heldout_tokens: int | None = 2048, progress: bool = False) -> dict:
    """Compare each GGUF under llama.cpp with `source` under transformers; returns a JSON-able report."""
    from workbench.chat.format import for_checkpoint, hf_token_ids
    from workbench.export import quality
    from workbench.export.hf_quant_verify import smoke_summary
    from workbench.runtimes.hf import load_model, load_tokenizer
    from workbench.runtimes.llamacpp import model as llamacpp

    tokenizer = load_tokenizer(source)
    chat_format = for_checkpoint(source, tokenizer)
    prompts = [chat_format.messages(m) for m in prompts or DEFAULT_PROMPTS]
    model = load_model(source)
    texts = quality.load_heldout_texts(heldout, tokenizer)
    windows = quality.token_windows(tokenizer, texts, window or quality.DEFAULT_WINDOW, max_heldout_tokens)
    ref_ids = hf_greedy(model, tokenizer, prompts, max_tokens, set(hf_token_ids(tokenizer, chat_format.stop_tokens)))
    prompt_ids = [hf_prompt_ids(tokenizer, m) for m in prompts]
    source_fn = quality.transformers_logits_fn(model)
    report = {"source": {"name": source.name, "path": str(source.path),
                         "answers": [tokenizer.decode(a, skip_special_tokens=True) for a in ref_ids]},
              "prompts": [m[-1]["content"] for m in prompts],
              "heldout": {"source": str(heldout) if heldout else f"bundled {quality.DEFAULT_HELDOUT}",
                          "windows": len(windows), "window": len(windows[0]),
                          "tokens": sum(len(w) - 1 for w in windows)},
              "files": {}}

    n_ctx = max(256, *[len(w) for w in windows], *[len(p) + SMOKE_MAX_TOKENS + 8 for p in prompt_ids])
    for art in artifacts:
        if (art.parent or {}).get("role") == "adapter base":
            report["files"][Path(art.path).name] = {"quant": art.parent.get("quant"), "skipped":
                                                    "base model the adapter GGUF is served on; not the fine-tune"}
            continue
        vs_merged = None
        if art.kind == "adapter":  # base GGUF + LoRA GGUF, as Ollama's FROM + ADAPTER serves them
            folder = Path(art.path).parent
            llm = llamacpp.load_gguf(folder / art.extra["base_gguf"], n_ctx=n_ctx, logits_all=True, lora_path=art.path)
        else:
            llm = llamacpp.load_gguf(art.path, n_ctx=n_ctx, logits_all=True)
        try:
            chats = [smoke_chat(llm, tokenizer, m, max(SMOKE_MAX_TOKENS, max_tokens), chat_format) for m in prompts]
            speed = llamacpp.generation_speed(llm, chats[0]["prompt"])
            held = quality.measure(source_fn, {"gguf": partial(llamacpp.sequence_logits, llm)}, windows)["gguf"]
            if art.kind == "adapter":
                vs_merged = _vs_merged(llm, Path(art.path).parent / art.extra["merged_counterpart"], n_ctx, windows)
        finally:
            llm.close()
        same = [c["ids"][:max_tokens] == ref for c, ref in zip(chats, ref_ids)]
        smoke = smoke_summary(chats)
        report["files"][Path(art.path).name] = {
            "quant": (art.parent or {}).get("quant"),
            "prompt_tokens_match": all(c["prompt"] == p for c, p in zip(chats, prompt_ids)),
            "answers": [c["text"] for c in chats],
            "same_answer": sum(same),
            "smoke": smoke,
            "smoke_chats": [{"messages": m, "answer": c["text"], "same_as_source": ok, "stopped": c["stopped"],
                             "stop_token": c["stop_token"], "leaked_special_tokens": c["leaked_special_tokens"],
                             "invented_user_turn": c["invented_user_turn"], "answer_tokens": len(c["ids"])}
                            for m, c, ok in zip(prompts, chats, same)],
            "heldout": held.as_dict(),
            "perplexity": held.perplexity,
            "source_perplexity": held.source_perplexity,
            "top1_agreement": held.top1_agreement,
            "mean_kl": held.mean_kl,
            "tokens_per_second": round(speed, 1),
            **({"vs_merged": vs_merged} if vs_merged else {}),
        }
    del model
    return report


def _vs_merged(llm, merged_path: Path, n_ctx: int, windows: list[list[int]]) -> dict:
    """Base + adapter (llm) against the merged GGUF of the same quant type, both under llama.cpp."""
    from workbench.export import quality
    from workbench.runtimes.llamacpp import model as llamacpp

    merged = llamacpp.load_gguf(merged_path, n_ctx=n_ctx, logits_all=True)
    try:
        result = quality.measure(partial(llamacpp.sequence_logits, merged),
                                 {"adapter": partial(llamacpp.sequence_logits, llm)}, windows)["adapter"]
    finally:
        merged.close()
    return {"merged_gguf": merged_path.name, **result.as_dict()}

"""Verify GGUF files the way they will be served: load each in llama.cpp and measure what the export cost against
the source checkpoint under transformers (export/verification.py).

Per file:
- held-out text (quality.py): perplexity, mean KL(source || gguf) and top-1 agreement of next-token
  distributions, llama.cpp's logits vs transformers' on the same token windows, in a stream;
- smoke chats with the file's embedded chat template, greedy: the prompt tokens equal transformers'
  apply_chat_template tokens, the model stops (an end-of-generation token within max tokens), no special
  token leaks into the text, no invented user turn, and the answer equals transformers' greedy answer.

A LoRA GGUF runs on its base GGUF (as Ollama's FROM + ADAPTER serves it) and is also measured against the merged
GGUF of the same quant type.
"""

from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.export.verification import SMOKE_MAX_TOKENS, smoke_chat, smoke_summary, source_reference


def verify_gguf(artifacts: list[Checkpoint], source: Checkpoint, prompts: list[list[dict]] | None = None,
                max_tokens: int = 48, *, heldout: str | Path | None = None, window: int | None = None,
                max_heldout_tokens: int | None = 2048, progress: bool = False) -> dict:
    """Compare each GGUF under llama.cpp with `source` under transformers; returns a JSON-able report."""
    from workbench.export import quality
    from workbench.runtimes.llamacpp.runtime import LlamaCppRuntime

    reference = source_reference(source, "cpu", "llama.cpp", prompts, heldout, window, max_heldout_tokens,
                                 answer_tokens=max_tokens)
    report, windows, prompt_ids = reference.report, reference.windows, reference.prompt_ids
    source_fn = reference.runtime.logits()
    n_ctx = max(256, *[len(w) for w in windows], *[len(p) + SMOKE_MAX_TOKENS + 8 for p in prompt_ids])
    for art in artifacts:
        if (art.parent or {}).get("role") == "adapter base":
            report["files"][Path(art.path).name] = {"quant": art.parent.get("quant"), "skipped":
                                                    "base model the adapter GGUF is served on; not the fine-tune"}
            continue
        vs_merged = None
        with LlamaCppRuntime(art, n_ctx=n_ctx, logits_all=True) as runtime:
            chats = [smoke_chat(runtime, reference, m, max(SMOKE_MAX_TOKENS, max_tokens)) for m in reference.prompts]
            speed = runtime.tokens_per_second(chats[0]["prompt"])
            held = quality.measure(source_fn, {"gguf": runtime.logits()}, windows)["gguf"]
            if art.kind == "adapter":
                vs_merged = _vs_merged(runtime, Path(art.path).parent / art.extra["merged_counterpart"], n_ctx,
                                       windows)
        same = [c["ids"][:max_tokens] == ref for c, ref in zip(chats, reference.ref)]
        report["files"][Path(art.path).name] = {
            "quant": (art.parent or {}).get("quant"),
            "prompt_tokens_match": all(c["prompt"] == p for c, p in zip(chats, prompt_ids)),
            "answers": [c["text"] for c in chats],
            "same_answer": sum(same),
            "smoke": smoke_summary(chats),
            "smoke_chats": [{"messages": m, "answer": c["text"], "same_as_source": ok, "stopped": c["stopped"],
                             "stop_token": c["stop_token"], "leaked_special_tokens": c["leaked_special_tokens"],
                             "invented_user_turn": c["invented_user_turn"], "answer_tokens": len(c["ids"])}
                            for m, c, ok in zip(reference.prompts, chats, same)],
            "heldout": held.as_dict(),
            "perplexity": held.perplexity,
            "source_perplexity": held.source_perplexity,
            "top1_agreement": held.top1_agreement,
            "mean_kl": held.mean_kl,
            "tokens_per_second": round(speed, 1),
            **({"vs_merged": vs_merged} if vs_merged else {}),
        }
    return report


def _vs_merged(adapter, merged_path: Path, n_ctx: int, windows: list[list[int]]) -> dict:
    """Base + adapter (its runtime) against the merged GGUF of the same quant type, both under llama.cpp."""
    from workbench.export import quality
    from workbench.runtimes.llamacpp.runtime import LlamaCppRuntime

    merged_file = Checkpoint(path=merged_path, name=merged_path.name, kind="quantized", format="gguf")
    with LlamaCppRuntime(merged_file, n_ctx=n_ctx, logits_all=True) as merged:
        result = quality.measure(merged.logits(), {"adapter": adapter.logits()}, windows)["adapter"]
    return {"merged_gguf": merged_path.name, **result.as_dict()}

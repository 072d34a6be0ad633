"""What verifying an export measures, whatever its format: the source checkpoint's side (its greedy answers to the
smoke prompts, held-out token windows and logits, under transformers), and the judgement of each smoke chat of an
exported file (did it stop, leak special tokens, invent a user turn, give the source's answer). Each format's
verifier (gguf/verify.py, hf_quant_verify.py, exl2_verify.py) loads its files in the runtime that serves them and
measures them against this reference."""

from pathlib import Path
from typing import NamedTuple

from workbench.checkpoints.checkpoint import Checkpoint

DEFAULT_PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Give me three tips for staying healthy."}],
    [{"role": "user", "content": "Write a Python function that returns the square of a number."}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "How do I say goodbye in French?"}],
]
SMOKE_MAX_TOKENS = 192  # room to stop: a smoke chat that runs past this has not stopped
ANSWER_TOKENS = 48  # the part of the greedy answers compared with the source


class SourceReference(NamedTuple):
    runtime: object  # the source's HFRuntime (tokenizer, chat format, model, logits)
    prompts: list[list[dict]]  # the smoke prompts as the source's template accepts them
    windows: list[list[int]]  # held-out token windows
    prompt_ids: list[list[int]]  # smoke-chat prompts, chat template applied
    stops: set[int]
    ref: list[list[int]]  # the source's greedy answers to the smoke prompts
    report: dict  # the verification report's head; "files" is filled per artifact

    @property
    def tokenizer(self):
        return self.runtime.tokenizer

    @property
    def chat_format(self):
        return self.runtime.chat_format()


def source_reference(source: Checkpoint, device: str, loader: str, prompts: list[list[dict]] | None,
                     heldout: str | Path | None, window: int | None, max_heldout_tokens: int | None,
                     answer_tokens: int = ANSWER_TOKENS) -> SourceReference:
    """The source checkpoint's side of a verification, made once for every artifact of an export."""
    from workbench.export import quality
    from workbench.runtimes.hf import HFRuntime, load_model

    runtime = HFRuntime(source, model=load_model(source, device=device))
    tokenizer, chat_format = runtime.tokenizer, runtime.chat_format()
    prompts = [chat_format.messages(m) for m in prompts or DEFAULT_PROMPTS]
    texts = quality.load_heldout_texts(heldout, tokenizer)
    windows = quality.token_windows(tokenizer, texts, window or quality.DEFAULT_WINDOW, max_heldout_tokens)
    prompt_ids = [runtime.prompt_tokens(m) for m in prompts]
    stops = runtime.stop_token_ids()
    ref = [runtime.greedy_tokens(p, answer_tokens, stops)[0] for p in prompt_ids]
    report = {"source": {"name": source.name, "path": str(source.path),
                         "answers": [tokenizer.decode(a, skip_special_tokens=True) for a in ref]},
              "prompts": [m[-1]["content"] for m in prompts], "loader": loader, "device": device,
              "heldout": {"source": str(heldout) if heldout else f"bundled {quality.DEFAULT_HELDOUT}",
                          "windows": len(windows), "window": len(windows[0]),
                          "tokens": sum(len(w) - 1 for w in windows)},
              "files": {}}
    return SourceReference(runtime, prompts, windows, prompt_ids, stops, ref, report)


def judge_chat(tokenizer, ids: list[int], stop: int | None, chat_format) -> dict:
    """A smoke chat's answer (ids before the stop token `stop`, None when the budget ran out): did it end its
    turn, leak special tokens into the text, or start a user turn (stopped at a token that opens one)?"""
    specials = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    stop_token = tokenizer.convert_ids_to_tokens(stop) if stop is not None else None
    return {"text": tokenizer.decode(ids, skip_special_tokens=True), "stopped": stop is not None,
            "stop_token": stop_token,
            "leaked_special_tokens": sorted({tokenizer.convert_ids_to_tokens(i) for i in ids if i in specials}),
            "invented_user_turn": stop_token is not None and stop_token in chat_format.user_turn}


def smoke_chat(runtime, reference: SourceReference, messages: list[dict], max_tokens: int) -> dict:
    """One greedy chat of an exported file in its runtime, with the file's own chat template, stopped where the
    source's ChatFormat says (as the Modelfile's stop list does), judged on the generated token ids."""
    prompt = runtime.prompt_tokens(messages)
    ids, stop = runtime.greedy_tokens(prompt, max_tokens, runtime.stop_token_ids(reference.chat_format))
    return {"prompt": prompt, "ids": ids, **judge_chat(reference.tokenizer, ids, stop, reference.chat_format)}


def smoke_summary(chats: list[dict]) -> dict:
    smoke = {"stopped": sum(c["stopped"] for c in chats),
             "no_leaks": sum(not c["leaked_special_tokens"] for c in chats),
             "no_invented_turns": sum(not c["invented_user_turn"] for c in chats), "total": len(chats),
             "leaked": sorted({t for c in chats for t in c["leaked_special_tokens"]}),
             "stop_tokens": sorted({c["stop_token"] for c in chats if c["stop_token"]})}
    smoke["passed"] = smoke["stopped"] == smoke["no_leaks"] == smoke["no_invented_turns"] == smoke["total"]
    return smoke


def file_report(art: Checkpoint, chats: list[dict], ref: list[list[int]], held, seconds: float) -> dict:
    """One verified file's entry: smoke chats against the source's answers `ref`, and held-out quality `held`."""
    same = [c["ids"][:ANSWER_TOKENS] == r for c, r in zip(chats, ref)]
    return {
        "quant": (art.parent or {}).get("quant"),
        "answers": [c["text"] for c in chats],
        "same_answer": sum(same),
        "smoke": smoke_summary(chats),
        "heldout": held.as_dict(),
        "perplexity": held.perplexity,
        "source_perplexity": held.source_perplexity,
        "top1_agreement": held.top1_agreement,
        "mean_kl": held.mean_kl,
        # greedy smoke-chat decoding (no KV cache), prompts included: generated tokens / wall seconds
        "tokens_per_second": sum(len(c["ids"]) + c["stopped"] for c in chats) / seconds,
    }

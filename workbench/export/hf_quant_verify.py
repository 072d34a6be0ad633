"""Verify AWQ/GPTQ folders the way transformers (and vLLM) serve them: reload each with
AutoModelForCausalLM.from_pretrained, which reads quantization_config from config.json and runs GPTQModel's
kernels, then measure against the source checkpoint:

- held-out text (quality.py): perplexity, mean KL(source || quantized) and top-1 agreement, window by window;
- smoke chats, greedy with the checkpoint's chat template: the model stops (an end-of-generation token within
  the budget), no special token leaks into the text, no invented user turn, and whether the answer equals the
  source's greedy answer.
"""

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.system.extras import require

SMOKE_MAX_TOKENS = 192  # room to stop: a smoke chat that runs past this has not stopped
ANSWER_TOKENS = 48  # the part of the greedy answers compared with the source


@contextlib.contextmanager
def quiet_stdout(log: Path | None = None):
    """Send fd 1 (GPTQModel's banner and log lines on import and load) to a log or /dev/null, so `--json`
    output stays one JSON object."""
    sys.stdout.flush()
    saved = os.dup(1)
    target = os.open(str(log) if log else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(target)


def load_quantized(path: Path, device: str):
    """The folder as transformers loads it (quantization_config from config.json)."""
    from workbench.system.library_defaults import quiet_library_warnings

    quiet_library_warnings()
    transformers = require("transformers", "Loading a quantized model", "eval")
    with quiet_stdout():
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), device_map=device)
    model.eval()
    return model


def greedy(model, prompt: list[int], max_tokens: int, stops: set[int]) -> tuple[list[int], int | None]:
    """Greedy continuation of `prompt`; returns (generated ids before the stop token, stop token or None)."""
    torch = require("torch", "Greedy generation", "eval")
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False,
                             eos_token_id=sorted(stops), pad_token_id=min(stops))
    new = out[0, len(prompt):].tolist()
    cut = next((i for i, t in enumerate(new) if t in stops), None)
    return (new, None) if cut is None else (new[:cut], new[cut])


def judge_chat(tokenizer, ids: list[int], stop: int | None, chat_format) -> dict:
    """A smoke chat's answer (ids before the stop token `stop`, None when the budget ran out): did it end its
    turn, leak special tokens into the text, or start a user turn (stopped at a token that opens one)?"""
    specials = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    stop_token = tokenizer.convert_ids_to_tokens(stop) if stop is not None else None
    return {"text": tokenizer.decode(ids, skip_special_tokens=True), "stopped": stop is not None,
            "stop_token": stop_token,
            "leaked_special_tokens": sorted({tokenizer.convert_ids_to_tokens(i) for i in ids if i in specials}),
            "invented_user_turn": stop_token is not None and stop_token in chat_format.user_turn}


def smoke_summary(chats: list[dict]) -> dict:
    smoke = {"stopped": sum(c["stopped"] for c in chats), "no_leaks": sum(not c["leaked_special_tokens"] for c in chats),
             "no_invented_turns": sum(not c["invented_user_turn"] for c in chats), "total": len(chats),
             "leaked": sorted({t for c in chats for t in c["leaked_special_tokens"]}),
             "stop_tokens": sorted({c["stop_token"] for c in chats if c["stop_token"]})}
    smoke["passed"] = smoke["stopped"] == smoke["no_leaks"] == smoke["no_invented_turns"] == smoke["total"]
    return smoke


def verify_hf_quant(artifacts: list[Checkpoint], source: Checkpoint, prompts: list[list[dict]] | None = None, *,
                    heldout: str | Path | None = None, window: int | None = None,
                    max_heldout_tokens: int | None = 2048, device: str | None = None,
                    smoke_max_tokens: int | None = None, **_ignored) -> dict:
    """Compare each quantized folder under transformers with `source` (fp32); returns a JSON-able report."""
    from workbench.export import quality

    torch = require("torch", "Verifying a quantized export", "eval")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    smoke_max_tokens = smoke_max_tokens or SMOKE_MAX_TOKENS
    tokenizer, model, windows, prompt_ids, stops, ref, chat_format, report = source_reference(
        source, device, "transformers AutoModelForCausalLM", prompts, heldout, window, max_heldout_tokens)
    source_fn = quality.transformers_logits_fn(model)
    for art in artifacts:
        qmodel = load_quantized(Path(art.path), device)
        held = quality.measure(source_fn, {"q": quality.transformers_logits_fn(qmodel)}, windows)["q"]
        chats, started = [], time.perf_counter()
        for p in prompt_ids:
            ids, stop = greedy(qmodel, p, smoke_max_tokens, stops)
            chats.append(judge_chat(tokenizer, ids, stop, chat_format) | {"ids": ids})
        seconds = time.perf_counter() - started
        del qmodel
        report["files"][Path(art.path).name] = file_report(art, chats, ref, held, seconds)
    del model
    return report


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


class SourceReference(NamedTuple):
    tokenizer: object
    model: object
    windows: list[list[int]]  # held-out token windows
    prompt_ids: list[list[int]]  # smoke-chat prompts, chat template applied
    stops: set[int]
    ref: list[list[int]]  # the source's greedy answers to the smoke prompts
    chat_format: object  # the source's ChatFormat
    report: dict  # the verification report's head; "files" is filled per artifact


def source_reference(source: Checkpoint, device: str, loader: str, prompts: list[list[dict]] | None,
                     heldout: str | Path | None, window: int | None, max_heldout_tokens: int | None) -> SourceReference:
    """The source checkpoint's side of a verification, made once for every artifact of an export."""
    from workbench.chat.format import for_checkpoint, hf_token_ids
    from workbench.export import quality
    from workbench.export.gguf.verify import DEFAULT_PROMPTS, hf_prompt_ids
    from workbench.runtimes.hf import load_model, load_tokenizer

    prompts = prompts or DEFAULT_PROMPTS
    tokenizer = load_tokenizer(source)
    chat_format = for_checkpoint(source, tokenizer)
    model = load_model(source, device=device)
    texts = quality.load_heldout_texts(heldout, tokenizer)
    windows = quality.token_windows(tokenizer, texts, window or quality.DEFAULT_WINDOW, max_heldout_tokens)
    prompt_ids = [hf_prompt_ids(tokenizer, chat_format.messages(m)) for m in prompts]
    stops = set(hf_token_ids(tokenizer, chat_format.stop_tokens))
    ref = [greedy(model, p, ANSWER_TOKENS, stops)[0] for p in prompt_ids]
    report = {"source": {"name": source.name, "path": str(source.path),
                         "answers": [tokenizer.decode(a, skip_special_tokens=True) for a in ref]},
              "prompts": [m[-1]["content"] for m in prompts], "loader": loader, "device": device,
              "heldout": {"source": str(heldout) if heldout else f"bundled {quality.DEFAULT_HELDOUT}",
                          "windows": len(windows), "window": len(windows[0]), "tokens": sum(len(w) - 1 for w in windows)},
              "files": {}}
    return SourceReference(tokenizer, model, windows, prompt_ids, stops, ref, chat_format, report)

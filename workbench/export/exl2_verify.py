"""Verify EXL2 folders the way they are served: loaded by exllamav2 (ExLlamaV2 + its CUDA kernels), fed the
token ids transformers' tokenizer and chat template produce, and measured against the source checkpoint under
transformers on the same GPU: held-out perplexity, mean KL(source || exl2), top-1 agreement (quality.py), and
greedy smoke chats (stops, no special-token leaks, no invented user turn, same answer as the source).
"""

import time
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.system.extras import require


def load_exl2(path: Path, max_seq_len: int):
    exllamav2 = require("exllamav2", "EXL2 verification", "exl2")
    config = exllamav2.ExLlamaV2Config(str(path))
    config.no_sdpa = True  # see NO_SDPA in exl2.py
    config.max_seq_len = max_seq_len
    model = exllamav2.ExLlamaV2(config)
    model.load()
    return model


def exl2_logits_fn(model):
    """fn(ids) -> logits [len(ids), vocab]: one forward pass without a cache."""
    torch = require("torch", "EXL2 verification", "eval")

    def run(ids: list[int]):
        with torch.inference_mode():
            return model.forward(torch.tensor([ids], dtype=torch.long)).float()[0].cpu().numpy()

    return run


def exl2_greedy(model, prompt: list[int], max_tokens: int, stops: set[int]) -> tuple[list[int], int | None]:
    torch = require("torch", "EXL2 verification", "eval")
    ids = list(prompt)
    with torch.inference_mode():
        for _ in range(max_tokens):
            nxt = int(model.forward(torch.tensor([ids], dtype=torch.long), last_id_only=True)[0, -1].argmax())
            if nxt in stops:
                return ids[len(prompt):], nxt
            ids.append(nxt)
    return ids[len(prompt):], None


def verify_exl2(artifacts: list[Checkpoint], source: Checkpoint, prompts: list[list[dict]] | None = None, *,
                heldout: str | Path | None = None, window: int | None = None, max_heldout_tokens: int | None = 2048,
                smoke_max_tokens: int | None = None, **_ignored) -> dict:
    from workbench.export import quality
    from workbench.export.verification import SMOKE_MAX_TOKENS, file_report, judge_chat, source_reference

    smoke_max_tokens = smoke_max_tokens or SMOKE_MAX_TOKENS
    reference = source_reference(source, "cuda", "exllamav2 ExLlamaV2", prompts, heldout, window, max_heldout_tokens)
    source_fn = reference.runtime.logits()
    longest = max([len(w) for w in reference.windows] + [len(p) + smoke_max_tokens + 1 for p in reference.prompt_ids])
    for art in artifacts:
        qmodel = load_exl2(Path(art.path), max(longest, 256))
        try:
            held = quality.measure(source_fn, {"q": exl2_logits_fn(qmodel)}, reference.windows)["q"]
            chats, started = [], time.perf_counter()
            for p in reference.prompt_ids:
                ids, stop = exl2_greedy(qmodel, p, smoke_max_tokens, reference.stops)
                chats.append(judge_chat(reference.tokenizer, ids, stop, reference.chat_format) | {"ids": ids})
            seconds = time.perf_counter() - started
        finally:
            qmodel.unload()
        reference.report["files"][Path(art.path).name] = file_report(art, chats, reference.ref, held, seconds)
    return reference.report

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

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.export.verification import SMOKE_MAX_TOKENS, file_report, judge_chat, source_reference
from workbench.system.extras import require


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


def verify_hf_quant(artifacts: list[Checkpoint], source: Checkpoint, prompts: list[list[dict]] | None = None, *,
                    heldout: str | Path | None = None, window: int | None = None,
                    max_heldout_tokens: int | None = 2048, device: str | None = None,
                    smoke_max_tokens: int | None = None, **_ignored) -> dict:
    """Compare each quantized folder under transformers with `source` (fp32); returns a JSON-able report."""
    from workbench.export import quality
    from workbench.runtimes.hf import HFRuntime

    torch = require("torch", "Verifying a quantized export", "eval")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    smoke_max_tokens = smoke_max_tokens or SMOKE_MAX_TOKENS
    reference = source_reference(source, device, "transformers AutoModelForCausalLM", prompts, heldout, window,
                                 max_heldout_tokens)
    source_fn = reference.runtime.logits()
    for art in artifacts:
        with HFRuntime(art, model=load_quantized(Path(art.path), device)) as runtime:
            held = quality.measure(source_fn, {"q": runtime.logits()}, reference.windows)["q"]
            chats, started = [], time.perf_counter()
            for p in reference.prompt_ids:
                ids, stop = runtime.greedy_tokens(p, smoke_max_tokens, reference.stops)
                chats.append(judge_chat(reference.tokenizer, ids, stop, reference.chat_format) | {"ids": ids})
            seconds = time.perf_counter() - started
        reference.report["files"][Path(art.path).name] = file_report(art, chats, reference.ref, held, seconds)
    return reference.report

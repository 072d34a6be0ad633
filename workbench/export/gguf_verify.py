"""Verify GGUF files the way they will be served: load each in llama.cpp, chat with its embedded template, and
measure what the export cost against the source checkpoint under transformers.

Per file: whether llama.cpp's prompt tokens equal transformers' apply_chat_template tokens, greedy answers of
both, and, teacher-forced on the source's greedy answers, top-1 agreement and mean KL(source || gguf).
"""

from pathlib import Path

from workbench.checkpoint import Checkpoint
from workbench.extras import require

DEFAULT_PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Give me three tips for staying healthy."}],
    [{"role": "user", "content": "Write a Python function that returns the square of a number."}],
]


def hf_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def hf_greedy(model, tokenizer, conversations: list[list[dict]], max_tokens: int) -> list[list[int]]:
    """Greedy answer token ids per conversation, stopped at the model's end-of-generation tokens (dropped)."""
    torch = require("torch", "Greedy generation", "eval")
    stops = model.generation_config.eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops] if stops is not None else [tokenizer.eos_token_id])
    answers = []
    for messages in conversations:
        ids = torch.tensor([hf_prompt_ids(tokenizer, messages)])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:].tolist()
        cut = next((i for i, t in enumerate(new) if t in stops), len(new))
        answers.append(new[:cut])
    return answers


def verify_gguf(artifacts: list[Checkpoint], source: Checkpoint, prompts: list[list[dict]] | None = None,
                max_tokens: int = 48) -> dict:
    """Compare each GGUF under llama.cpp with `source` under transformers; returns a JSON-able report."""
    import numpy as np

    from workbench import llamacpp
    from workbench.models import load_model, load_tokenizer

    torch = require("torch", "GGUF verification", "eval")
    prompts = prompts or DEFAULT_PROMPTS
    tokenizer = load_tokenizer(source)
    model = load_model(source)
    ref_ids = hf_greedy(model, tokenizer, prompts, max_tokens)
    prompt_ids = [hf_prompt_ids(tokenizer, m) for m in prompts]
    ref_logprobs = []
    with torch.no_grad():
        for p, a in zip(prompt_ids, ref_ids):
            logits = model(torch.tensor([p + a])).logits[0, len(p) - 1: len(p) + len(a) - 1].double()
            ref_logprobs.append(torch.log_softmax(logits, -1).numpy())
    del model
    report = {"source": {"name": source.name, "path": str(source.path),
                         "answers": [tokenizer.decode(a, skip_special_tokens=True) for a in ref_ids]},
              "prompts": [m[-1]["content"] for m in prompts], "files": {}}

    for art in artifacts:
        n_ctx = max(len(p) + len(a) for p, a in zip(prompt_ids, ref_ids)) + max_tokens + 8
        llm = llamacpp.load_gguf(art.path, n_ctx=max(n_ctx, 256), logits_all=True)
        try:
            answers = llamacpp.chat(llm, prompts, max_tokens)
            same_prompt = [llamacpp.chat_prompt_tokens(llm, m) == p for m, p in zip(prompts, prompt_ids)]
            agree, kls = [], []
            for p, a, ref in zip(prompt_ids, ref_ids, ref_logprobs):
                if not a:
                    continue
                logits = llamacpp.sequence_logits(llm, p + a)[len(p) - 1: len(p) + len(a) - 1].astype(np.float64)
                logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
                agree.extend((logp.argmax(-1) == ref.argmax(-1)).tolist())
                kls.extend((np.exp(ref) * (ref - logp)).sum(-1).tolist())
        finally:
            llm.close()
        ref_text = report["source"]["answers"]
        report["files"][Path(art.path).name] = {
            "quant": (art.parent or {}).get("quant"),
            "prompt_tokens_match": all(same_prompt),
            "answers": answers,
            "same_answer": sum(x.strip() == y.strip() for x, y in zip(answers, ref_text)),
            "top1_agreement": float(np.mean(agree)) if agree else None,
            "mean_kl": float(np.mean(kls)) if kls else None,
        }
    return report

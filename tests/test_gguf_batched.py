"""Batched llama.cpp decoding gives the one-at-a-time answers, and lm-eval loglikelihood with shared-prefix reuse
gives the from-scratch log-probabilities, on the default model's GGUF."""

import json

import pytest

from workbench.checkpoints.default_model import default_gguf_path


@pytest.fixture(scope="module")
def gguf_chat():
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.runtimes.llamacpp.model import chat_formatter, load_gguf
    from workbench.runtimes.llamacpp.runtime import LlamaCppRuntime

    ckpt = resolve_checkpoint(str(default_gguf_path()))
    chat_format = LlamaCppRuntime(ckpt).chat_format()
    llm = load_gguf(ckpt.path)
    yield llm, chat_formatter(llm, chat_format), chat_format
    llm.close()


def _conversations(chat_format, n: int) -> list[list[dict]]:
    from workbench.eval.suites import load_suite

    items = load_suite("contacts", limit=n).items["contacts"]
    convs = [chat_format.messages(it["messages"]) for it in items]
    # One prompt longer than llama.cpp's 512-token batch, so it is fed in chunks while others run.
    story = " ".join(f"Entry {i}: Ana Lima, 34, lives in Porto." for i in range(52))
    convs.append([{"role": "user", "content": f"{story}\nHow old is Ana? Answer with the number only."}])
    return convs


def _one_at_a_time(llm, formatter, convs, max_tokens, stop=None):
    from workbench.runtimes.llamacpp.model import chat

    llm.chat_handler = formatter.to_chat_handler()
    return [chat(llm, [c], max_tokens, stop)[0] for c in convs]


def test_batched_greedy_answers_equal_one_at_a_time(gguf_chat):
    from workbench.runtimes.llamacpp.model import chat_batched

    llm, formatter, chat_format = gguf_chat
    convs = _conversations(chat_format, 6)
    assert len(llm.tokenize(formatter(messages=convs[-1]).prompt.encode(), special=True)) > 512
    done = []
    # 7 conversations on 3 sequences: finished sequences take the next prompt (continuous batching).
    batched = chat_batched(llm, formatter, convs, 48, None, n_parallel=3, progress=done.append)
    single = _one_at_a_time(llm, formatter, convs, 48)
    assert batched == single
    assert len(done) == len(convs) and all(a.strip() for a in batched), batched


def test_batched_follows_stop_strings_and_max_tokens(gguf_chat):
    from workbench.runtimes.llamacpp.model import chat_batched

    llm, formatter, chat_format = gguf_chat
    convs = _conversations(chat_format, 4)
    for max_tokens, stop in ((5, None), (48, ['"age"', ","])):
        batched = chat_batched(llm, formatter, convs, max_tokens, stop, n_parallel=4)
        assert batched == _one_at_a_time(llm, formatter, convs, max_tokens, stop), (max_tokens, stop)
    assert not any('"age"' in a for a in batched)
    short = chat_batched(llm, formatter, convs[:2], 5, None, n_parallel=2)
    assert all(len(llm.tokenize(a.encode(), add_bos=False)) <= 6 for a in short), short


def test_shared_prompt_prefix_is_evaluated_once_with_the_same_answers(gguf_chat, monkeypatch):
    """The contacts items share their system prompt and instructions: that prefix is evaluated once, each
    sequence starts from a copy of it, and the answers stay the one-at-a-time ones."""
    import llama_cpp

    from workbench.runtimes.llamacpp.batch import MIN_SHARED_PREFIX, shared_prefix_length
    from workbench.runtimes.llamacpp.model import chat_batched

    llm, formatter, chat_format = gguf_chat
    convs = _conversations(chat_format, 8)[:-1]
    prompts = [llm.tokenize(formatter(messages=c).prompt.encode(), add_bos=False, special=True) for c in convs]
    shared = shared_prefix_length(prompts)
    assert shared >= MIN_SHARED_PREFIX, shared
    fed = []
    real_decode = llama_cpp.llama_decode
    monkeypatch.setattr(llama_cpp, "llama_decode", lambda ctx, batch: (fed.append(batch.n_tokens),
                                                                        real_decode(ctx, batch))[1])
    batched = chat_batched(llm, formatter, convs, 40, None, n_parallel=3)
    monkeypatch.setattr(llama_cpp, "llama_decode", real_decode)
    assert batched == _one_at_a_time(llm, formatter, convs, 40)
    generated = sum(len(llm.tokenize(a.encode(), add_bos=False)) for a in batched)
    prompt_tokens_fed = sum(fed) - generated
    assert prompt_tokens_fed <= sum(map(len, prompts)) - shared * (len(prompts) - 1) + len(prompts), fed


def test_shared_prefix_length_leaves_each_prompt_a_token_of_its_own():
    from workbench.runtimes.llamacpp.batch import MIN_SHARED_PREFIX, shared_prefix_length

    base = list(range(100, 100 + MIN_SHARED_PREFIX + 4))
    assert shared_prefix_length([base + [1, 2], base + [3]]) == len(base)
    assert shared_prefix_length([base, base]) == len(base) - 1
    assert shared_prefix_length([base[:MIN_SHARED_PREFIX - 1] + [1], base[:MIN_SHARED_PREFIX - 1] + [2]]) == 0
    assert shared_prefix_length([base + [1]]) == len(base)


def test_gguf_eval_path_is_batched_with_the_same_scores(store_dir, gguf_chat):
    """`wb eval` on the GGUF goes through the batched path; its outputs are the one-at-a-time ones."""
    import subprocess
    import sys

    llm, formatter, chat_format = gguf_chat
    res = subprocess.run([sys.executable, "-m", "workbench", "eval", str(default_gguf_path()), "--suite", "contacts",
                          "--limit", "5", "--json"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    run_dir = store_dir / "runs" / json.loads(res.stdout)["run_id"]
    samples = [json.loads(line) for line in (run_dir / "samples" / "contacts.jsonl").read_text().splitlines()]
    from workbench.eval.suites import load_suite

    items = load_suite("contacts", limit=5).items["contacts"]
    expected = _one_at_a_time(llm, formatter, [chat_format.messages(it["messages"]) for it in items], 64)
    assert [s["output"] for s in samples] == expected


def test_loglikelihood_reuses_shared_prefixes_with_the_same_logprobs(data_dir):
    from workbench.runtimes.llamacpp.harness_lm import LlamaCppLM

    lm = LlamaCppLM(str(default_gguf_path()))
    requests = []
    for subject in ("anatomy", "astronomy"):
        header = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        lines = (data_dir / "mmlu" / "test" / f"{subject}.jsonl").read_text().splitlines()[:3]
        for row in map(json.loads, lines):
            prompt = header + row["question"] + "\n" + "".join(
                f"{k}. {c}\n" for k, c in zip("ABCD", row["choices"])) + "Answer:"
            context = lm.tok_encode(prompt)
            requests += [(None, context, lm.tok_encode(f" {k}", add_special_tokens=False)) for k in "ABCD"]
    requests.append((None, requests[0][1], lm.tok_encode(" A. The answer", add_special_tokens=False)))
    reused = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    evaluated_tokens = []
    original_eval = lm.llm.eval
    lm.llm.eval = lambda tokens: (evaluated_tokens.append(len(tokens)), original_eval(tokens))[1]
    try:
        again = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    finally:
        lm.llm.eval = original_eval
    lm.reuse_prefix = False
    scratch = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    lm.llm.close()
    assert [r[1] for r in reused] == [r[1] for r in scratch]
    assert max(abs(a[0] - b[0]) for a, b in zip(reused, scratch)) < 1e-4
    assert again == reused
    # Each question's prompt is evaluated once for its four choices, and the header once per subject.
    total_prompt_tokens = sum(len(r[1]) for r in requests)
    assert sum(evaluated_tokens) < total_prompt_tokens / 4, (sum(evaluated_tokens), total_prompt_tokens)


def test_lm_eval_generate_until_decodes_greedy_requests_together(data_dir):
    """GSM8K-style requests with one few-shot block: lm-eval's generate_until on the GGUF backend decodes them
    batch_size at a time (the block evaluated once) and answers as one completion at a time would."""
    from lm_eval.api.instance import Instance

    from workbench.runtimes.llamacpp.harness_lm import LlamaCppLM

    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[:7]]
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in rows[:2])
    until = {"until": ["Question:", "\n\n"], "max_gen_toks": 48, "do_sample": False}
    requests = [Instance("generate_until", r, (shots + f"Question: {r['question']}\nAnswer:", until), k)
                for k, r in enumerate(rows[2:])]
    lm = LlamaCppLM(str(default_gguf_path()), batch_size=3)
    try:
        batched = lm.generate_until(requests, disable_tqdm=True)
        one_at_a_time = [lm.complete_one(lm._generation_request(*r.args)).split("Question:")[0].split("\n\n")[0]
                         for r in requests]
    finally:
        lm.llm.close()
    assert batched == one_at_a_time
    # The 135M model opens some answers with a blank line, which "\n\n" cuts to nothing: the rest must be real.
    assert sum(bool(a.strip()) for a in batched) >= 3 and not any("Question:" in a for a in batched), batched

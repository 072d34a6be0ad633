"""The GGUF eval path, batched against one conversation at a time, and against transformers on the same items,
side by side in one run; and lm-eval loglikelihood requests with shared-prefix reuse against without.

    WB_DATA_DIR=../shared/data .venv/bin/python bench/bench_gguf_batched.py [--gguf FILE] [--items 80]
        [--batch 16] [--mmlu-questions 40] [--gsm8k-questions 16] [--gsm8k-shots random|fixed] [--skip SECTION]

1. Generation: the contacts suite's items (greedy, its generation settings) through
   - "one at a time": llama-cpp-python's create_chat_completion per conversation (the path before batching),
   - "batched": workbench.runtimes.llamacpp.model.chat_batched, --batch sequences per llama.cpp decode call,
   - "transformers": the default model's HF checkpoint in fp32 with the same batch size (wb's HF path).
   The GGUF's two outputs must be identical; the table shows seconds, items/s and the ratios.
2. lm-eval generate_until: GSM8K questions as lm-eval's gsm8k task asks them, through wb's lm-eval llama.cpp
   backend, --batch at a time against one completion at a time; outputs must be identical. The few-shot
   examples differ per question (lm-eval's default sampler), or are one shared block with --gsm8k-shots fixed.
3. Loglikelihood: MMLU questions from the mirror (lm-eval's mmlu prompt: subject header, question, lettered
   choices, "Answer:"; continuations " A".." D") through wb's lm-eval llama.cpp backend, with and without
   shared-prefix reuse. The log-probabilities must agree (max |delta| printed) and pick the same answers.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def generation(args) -> None:
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.eval.suites import load_suite
    from workbench.runtimes.hf import HFRuntime
    from workbench.runtimes.llamacpp.model import chat, chat_batched, chat_formatter, load_gguf
    from workbench.runtimes.llamacpp.runtime import LlamaCppRuntime

    suite = load_suite("contacts", limit=args.items)
    task = suite.config.tasks[0]
    items = suite.items[task.name]
    spec = task.generation.model_copy(update={"batch_size": args.batch})
    gguf = resolve_checkpoint(str(args.gguf))
    chat_format = LlamaCppRuntime(gguf).chat_format()
    llm = load_gguf(gguf.path)
    formatter = chat_formatter(llm, chat_format)
    conversations = [chat_format.messages(it["messages"]) for it in items]

    started = time.perf_counter()
    batched = chat_batched(llm, formatter, conversations, spec.max_new_tokens, spec.stop or None,
                           n_parallel=args.batch)
    t_batched = time.perf_counter() - started
    llm.chat_handler = formatter.to_chat_handler()
    started = time.perf_counter()
    single = [chat(llm, [c], spec.max_new_tokens, spec.stop or None)[0] for c in conversations]
    t_single = time.perf_counter() - started
    llm.close()
    hf = HFRuntime(resolve_checkpoint("default"))
    started = time.perf_counter()
    hf.generate([it["messages"] for it in items], spec)
    t_hf = time.perf_counter() - started

    same = sum(a == b for a, b in zip(single, batched))
    n = len(items)
    print(f"\n## Generation: {n} contacts items, max {spec.max_new_tokens} new tokens, greedy, {gguf.path.name}\n")
    print("| path | seconds | items/s |")
    print("|---|---|---|")
    for name, t in (("GGUF one at a time (before)", t_single), (f"GGUF batched ({args.batch} sequences)", t_batched),
                    (f"transformers fp32 (batch {args.batch})", t_hf)):
        print(f"| {name} | {t:.1f} | {n / t:.2f} |")
    print(f"\nbatched / one at a time: {t_single / t_batched:.2f}x faster; GGUF batched vs transformers: "
          f"{t_hf / t_batched:.2f}x; identical outputs: {same}/{n}")


def mmlu_requests(data_dir: Path, n_questions: int, tok) -> list[tuple]:
    subjects = sorted(p.stem for p in (data_dir / "mmlu" / "test").glob("*.jsonl"))[:4]
    per = max(1, n_questions // len(subjects))
    requests = []
    for subject in subjects:
        header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        with open(data_dir / "mmlu" / "test" / f"{subject}.jsonl") as fh:
            rows = [json.loads(line) for _, line in zip(range(per), fh)]
        for row in rows:
            prompt = header + row["question"].strip() + "\n" + "".join(
                f"{letter}. {choice}\n" for letter, choice in zip("ABCD", row["choices"])) + "Answer:"
            context = tok(prompt)
            for letter in "ABCD":
                requests.append((None, context, tok(f" {letter}", bos=False)))
    return requests


def loglikelihood(args) -> None:
    from workbench.runtimes.llamacpp.harness_lm import LlamaCppLM

    data_dir = Path(os.environ.get("WB_DATA_DIR", REPO.parent / "shared" / "data"))
    path = args.gguf
    results, seconds = {}, {}
    for reuse in (False, True):
        lm = LlamaCppLM(str(path), reuse_prefix=reuse)
        tok = lambda s, bos=True: lm.tok_encode(s, add_special_tokens=bos)  # noqa: E731
        requests = mmlu_requests(data_dir, args.mmlu_questions, tok)
        started = time.perf_counter()
        results[reuse] = lm._loglikelihood_tokens(requests, disable_tqdm=True)
        seconds[reuse] = time.perf_counter() - started
        lm.llm.close()
    delta = max(abs(a[0] - b[0]) for a, b in zip(results[False], results[True]))
    picks = [[max(range(4), key=lambda k: r[q * 4 + k][0]) for q in range(len(r) // 4)] for r in results.values()]
    print(f"\n## Loglikelihood: {len(requests)} MMLU requests ({len(requests) // 4} questions x 4 choices), "
          f"{Path(path).name}\n")
    print("| path | seconds | requests/s |")
    print("|---|---|---|")
    for reuse in (False, True):
        print(f"| {'shared-prefix reuse' if reuse else 'each request from scratch (before)'} | {seconds[reuse]:.1f} | "
              f"{len(requests) / seconds[reuse]:.1f} |")
    print(f"\nreuse / scratch: {seconds[False] / seconds[True]:.2f}x faster; max |delta logprob| {delta:.2e}; "
          f"same answer picked: {sum(a == b for a, b in zip(*picks))}/{len(picks[0])}")


def lm_eval_generation(args) -> None:
    """lm-eval generate_until requests shaped as its gsm8k task builds them ("Question: ... Answer:" after 5 solved
    train examples, cut at "Question:"), through wb's llama.cpp backend: decoded --batch at a time against one
    completion at a time. The examples are drawn per question by a seeded RNG, as lm-eval's default sampler does
    (`--gsm8k-shots random`), or are one block for every question (`fixed`, as tasks with fixed exemplars such as
    gsm8k_cot), which the batched path evaluates once."""
    import random

    from lm_eval.api.instance import Instance

    from workbench.runtimes.llamacpp.harness_lm import LlamaCppLM

    data_dir = Path(os.environ.get("WB_DATA_DIR", REPO.parent / "shared" / "data"))
    def read(name: str, n: int) -> list[dict]:
        with open(data_dir / "gsm8k" / name) as fh:
            return [json.loads(line) for _, line in zip(range(n), fh)]

    train, rnd = read("train.jsonl", 500), random.Random(1234)

    def shots() -> str:
        examples = train[:5] if args.gsm8k_shots == "fixed" else rnd.sample(train, 5)
        return "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in examples)

    gen = {"until": ["Question:", "</s>", "<|im_end|>"], "max_gen_toks": args.gsm8k_tokens, "do_sample": False}
    requests = [Instance("generate_until", r, (shots() + f"Question: {r['question']}\nAnswer:", gen), k)
                for k, r in enumerate(read("test.jsonl", args.gsm8k_questions))]
    lm = LlamaCppLM(str(args.gguf), batch_size=args.batch)
    started = time.perf_counter()
    batched = lm.generate_until(requests, disable_tqdm=True)
    t_batched = time.perf_counter() - started
    started = time.perf_counter()
    single = [lm.complete_one(lm._generation_request(*r.args)).split("Question:")[0] for r in requests]
    t_single = time.perf_counter() - started
    lm.llm.close()
    n = len(requests)
    print(f"\n## lm-eval generate_until: {n} GSM8K questions, 5-shot ({args.gsm8k_shots} examples), "
          f"max {args.gsm8k_tokens} new tokens, "
          f"{Path(args.gguf).name}\n")
    print("| path | seconds | requests/s |")
    print("|---|---|---|")
    for name, t in (("one completion at a time (before)", t_single), (f"batched ({args.batch} sequences)", t_batched)):
        print(f"| {name} | {t:.1f} | {n / t:.2f} |")
    print(f"\nbatched / one at a time: {t_single / t_batched:.2f}x faster; identical outputs: "
          f"{sum(a == b for a, b in zip(single, batched))}/{n}")


def default_q8_0() -> Path:
    """The default model exported to Q8_0 by wb's own GGUF export (once, into $WB_HOME/bench): the file type the
    demo ships, whose batched matmuls llama.cpp runs through its fast kernels."""
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.export.gguf.exporter import export_gguf
    from workbench.system.home import home

    out = home() / "bench" / "default-q8_0"
    found = sorted(out.glob("*Q8_0.gguf"))
    if found:
        return found[0]
    print("exporting the default model to Q8_0 (once)", file=sys.stderr, flush=True)
    return export_gguf(resolve_checkpoint("default"), out, ["q8_0"], ollama=False, progress=False)[0].path


SECTIONS = ("generation", "lm-eval-generation", "loglikelihood")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the default model in Q8_0)")
    ap.add_argument("--items", type=int, default=80)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--mmlu-questions", type=int, default=40)
    ap.add_argument("--gsm8k-questions", type=int, default=16)
    ap.add_argument("--gsm8k-tokens", type=int, default=256)
    ap.add_argument("--gsm8k-shots", choices=["random", "fixed"], default="random")
    ap.add_argument("--skip", choices=SECTIONS, action="append", default=[])
    args = ap.parse_args()
    if args.gguf is None:
        args.gguf = default_q8_0()
    for name in SECTIONS:
        if name not in args.skip:
            globals()[name.replace("-", "_")](args)


if __name__ == "__main__":
    main()

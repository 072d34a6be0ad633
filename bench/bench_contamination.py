"""Contamination check speed: 100k training rows against the full MMLU and GSM8K test sets (13-grams, lm-eval's
rule), against a naive exact-match pass over the same rows, in one run.

    WB_DATA_DIR=../shared/data .venv/bin/python bench/bench_contamination.py [--rows 100000]

The rows are built from real text: GSM8K *train* problems with their solutions, each made distinct by a
numbered preamble, plus 20 GSM8K *test* questions lightly reworded (a number changed, a word cut) planted at
known rows. Target: the n-gram check (index build included) within 60 s on 2 cores. Both methods' finds are
printed: exact matching misses every reworded leak.
"""

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workbench.data.contamination import NgramIndex, exact_matches  # noqa: E402
from workbench.data.eval_sources import gsm8k_items, mmlu_items  # noqa: E402

PLANTED = 20


def reword(question: str) -> str:
    q = re.sub(r"\d+", lambda m: str(int(m.group()) + 3), question, count=1)
    ws = q.split()
    return " ".join(ws[:3] + ws[4:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("WB_DATA_DIR", "../shared/data")))
    args = ap.parse_args()

    train = [json.loads(l) for l in (args.data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(l) for l in (args.data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    rows = [f"Exercise {i}: {train[i % len(train)]['question']} Solution: {train[i % len(train)]['answer']}"
            for i in range(args.rows)]
    planted = sorted(rng.sample(range(args.rows), PLANTED))
    for k, r in enumerate(planted):
        rows[r] = reword(test[k * 50]["question"])
    words = sum(len(r.split()) for r in rows)

    t0 = time.perf_counter()
    items = mmlu_items(args.data_dir) + gsm8k_items(args.data_dir)
    t_read = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = NgramIndex(items)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = index.check(rows)
    t_check = time.perf_counter() - t0
    ngram_found = {h.row for h in report.hits}

    t0 = time.perf_counter()
    exact = exact_matches(items, rows)
    t_exact = time.perf_counter() - t0

    ngram_total = t_index + t_check
    print(f"{args.rows} training rows ({words / args.rows:.0f} words each on average) against {len(items)} eval items "
          f"(MMLU test {sum(1 for i in items if i.source.startswith('mmlu'))}, GSM8K test "
          f"{sum(1 for i in items if i.source.startswith('gsm8k'))}); eval files read in {t_read:.2f} s\n")
    print("| method | time | planted leaks found | other rows flagged |")
    print("|---|---|---|---|")
    print(f"| 13-gram overlap (index {t_index:.2f} s + check {t_check:.2f} s) | {ngram_total:.2f} s | "
          f"{len(ngram_found & set(planted))}/{PLANTED} | {len(ngram_found - set(planted))} |")
    print(f"| naive exact match | {t_exact:.2f} s | {len({r for r, _ in exact} & set(planted))}/{PLANTED} | "
          f"{len({r for r, _ in exact} - set(planted))} |")
    print(f"\nn-gram / exact-match time: {ngram_total / t_exact:.2f}; target n-gram time <= 60 s: "
          f"{'met' if ngram_total <= 60 else 'NOT met'} ({index.short} eval items shorter than 13 words unchecked)")


if __name__ == "__main__":
    main()

"""The cost of each QLoRA merge target (`wb merge --into fp|dequantized`) against the adapter on its 4-bit base.

For an adapter trained on an NF4/FP4 base (e.g. `wb train contacts-qlora -o DIR`), this merges it both ways with
`wb merge`, then measures each merged model against the adapter on its bitsandbytes-loaded base (unmerged, as
trained) on held-out text: mean per-token KL(4-bit adapter || merged) and top-1 agreement, over the contacts test
prompts and answers (never trained on) and a slice of MMLU test questions; and the contacts task score
(`wb eval X --suite contacts --no-harness`) of each, against the adapter's own.

    python bench/bench_qlora_merge.py ADAPTER --work DIR [--tokens 3000] [--limit N]
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGETS = ("fp", "dequantized")


def wb(*args) -> dict:
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "workbench", *map(str, args), "--json"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if res.returncode != 0:
        sys.exit(f"wb {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return {**json.loads(res.stdout), "_s": round(time.monotonic() - started, 1)}


def held_out_texts(tokenizer, data_dir: Path, max_tokens: int) -> list[str]:
    """Contacts test rows (prompt and reference answer, in the chat template as the adapter was trained), then MMLU
    test questions with their answers, until `max_tokens`: none of it is training data."""
    rows = [json.loads(line) for line in (REPO / "evals/data/contacts_test.jsonl").read_text().splitlines() if line]
    contacts = [tokenizer.apply_chat_template(r["messages"] + [{"role": "assistant", "content": r["reference"]}],
                                              tokenize=False) for r in rows]
    mmlu = []
    for subject in ("high_school_geography", "world_religions", "conceptual_physics"):
        for line in (data_dir / "mmlu" / "test" / f"{subject}.jsonl").read_text().splitlines()[:15]:
            q = json.loads(line)
            choices = "\n".join(f"{'ABCD'[i]}. {c}" for i, c in enumerate(q["choices"]))
            mmlu.append(f"{q['question']}\n{choices}\nAnswer: {'ABCD'[q['answer']]}")
    texts, total = [], 0
    for pair in zip(contacts, mmlu + [None] * len(contacts)):  # alternate, so a token cap keeps both kinds
        for text in pair:
            if text is None or total >= max_tokens:
                continue
            texts.append(text)
            total += len(tokenizer(text)["input_ids"])
    return texts


def distribution_costs(adapter, merged_dirs: dict, texts: list[str], batch_size: int = 8) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.merge.probe import probe_tokenizer
    from workbench.merge.qlora import DistributionCost
    from workbench.runtimes.hf import load_model

    tokenizer = probe_tokenizer(adapter)
    batches = [tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True)
               for i in range(0, len(texts), batch_size)]

    def logits_of(model):
        with torch.no_grad():
            for batch in batches:
                yield model(**batch).logits.float()[batch["attention_mask"].bool()]

    reference = load_model(adapter)  # base quantized as trained + adapter, unmerged
    ref = list(logits_of(reference))
    del reference
    gc.collect()
    costs = {}
    for target, folder in merged_dirs.items():
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        cost = DistributionCost(0.0, 0.0, 0)
        for r, got in zip(ref, logits_of(model)):
            cost = cost.add(r, got)
        costs[target] = cost
        del model
        gc.collect()
    return costs


def contacts_score(ckpt: Path, store: Path, limit: int | None) -> dict:
    summary = wb("eval", ckpt, "--suite", "contacts", "--no-harness", "--store", store,
                 *(["--limit", limit] if limit else []))
    values = {m["metric"]: m["value"] for m in summary["metrics"] if m["task"] == "contacts"}
    return {"exact": values["exact"], "json_fields": values["json_fields"], "json_valid": values["json_valid"],
            "n": next(m["n"] for m in summary["metrics"] if m["metric"] == "exact"), "eval_s": summary["_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", type=Path, help="An adapter trained on a 4-bit base (its lineage says so).")
    parser.add_argument("--work", type=Path, required=True, help="Scratch folder for the merged models and store.")
    parser.add_argument("--tokens", type=int, default=3000, help="Held-out tokens for KL / top-1.")
    parser.add_argument("--limit", type=int, default=None, help="Contacts rows to score (default: all).")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("WB_DATA_DIR", REPO.parent / "shared/data")))
    args = parser.parse_args()

    from workbench.checkpoints.quantization import quantization_of
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.merge.probe import probe_tokenizer

    adapter = resolve_checkpoint(args.adapter)
    if not quantization_of(adapter):
        sys.exit(f"{args.adapter}: not trained on a quantized base (no quantization in its lineage)")
    store = args.work / "store"
    merges = {}
    for target in TARGETS:
        out = args.work / f"merged-{target}"
        if not out.exists():
            merges[target] = wb("merge", args.adapter, "-o", out, "--into", target, "--store", store)
    texts = held_out_texts(probe_tokenizer(adapter), args.data_dir, args.tokens)
    started = time.monotonic()
    costs = distribution_costs(adapter, {t: args.work / f"merged-{t}" for t in TARGETS}, texts)
    kl_s = round(time.monotonic() - started, 1)
    scores = {"4-bit adapter": contacts_score(args.adapter, store, args.limit)}
    for target in TARGETS:
        scores[target] = contacts_score(args.work / f"merged-{target}", store, args.limit)

    ref = scores["4-bit adapter"]
    rows = [{"target": "4-bit adapter (reference)", "kl": 0.0, "top1": 1.0, **ref, "delta_json_fields": 0.0,
             "delta_exact": 0.0}]
    for target in TARGETS:
        s = scores[target]
        rows.append({"target": target, "kl": costs[target].kl, "top1": costs[target].top1, **s,
                     "delta_json_fields": s["json_fields"] - ref["json_fields"], "delta_exact": s["exact"] - ref["exact"],
                     "merge_s": merges.get(target, {}).get("_s"),
                     "probe": merges.get(target, {}).get("vs_quantized_adapter")})
    tokens = costs[TARGETS[0]].tokens
    print(f"held-out tokens: {tokens} ({len(texts)} texts), KL/top-1 in {kl_s} s; contacts rows: {ref['n']}")
    print("| target | KL (nats/token) | top-1 | contacts json_fields | exact | Δ json_fields | Δ exact | merge s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['kl']:.3g} | {r['top1']:.4f} | {r['json_fields']:.4f} | {r['exact']:.4f} | "
              f"{r['delta_json_fields']:+.4f} | {r['delta_exact']:+.4f} | {r.get('merge_s') or ''} |")
    (args.work / "bench_qlora_merge.json").write_text(json.dumps({"tokens": tokens, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

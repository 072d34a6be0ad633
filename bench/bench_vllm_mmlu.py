"""MMLU throughput under `wb eval --backend vllm` against the raw `lm_eval` CLI's HF backend, on the same items
of a Llama with random weights built here, and the scores of both as a check of the path.

    WB_DATA_DIR=../shared/data python bench/bench_vllm_mmlu.py --shape 7b [--tasks mmlu] [--limit 20]
    WB_DATA_DIR=../shared/data python bench/bench_vllm_mmlu.py --shape tiny --device cpu   # the path, on a CPU

--shape 7b is Llama-2-7B's (4096 hidden, 11008 intermediate, 32 layers, 32 heads; the default model's tokenizer,
so its 49152 tokens: 7.0B parameters), built in bfloat16 on the GPU and saved once under --workdir; it is a GPU
machine's bench (goal: vLLM >= 2x). --shape tiny (256 hidden, 4 layers) runs wherever vLLM does, CPU included.

Both sides are whole processes timed from the start, one after the other: raw `lm_eval run --model hf` (reading
the local mirror through bench/harness_tasks.py's task folder, as bench/bench_harness.py does) and
`wb eval DIR --tasks ... --backend vllm --no-cache`. Throughput is loglikelihood requests per second of the whole
process; the per-item answers (argmax over the choices) are compared, and the accuracies printed side by side.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SHAPES = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=8),
}


def build(out: Path, shape: str, dtype: str, device: str) -> Path:
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from workbench.checkpoints.resolve import resolve_checkpoint

    tok = AutoTokenizer.from_pretrained(str(resolve_checkpoint("default").path))
    config = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    partial = out.with_name(out.name + ".partial")
    model.save_pretrained(str(partial))
    tok.save_pretrained(str(partial))
    partial.rename(out)
    print(f"built {shape}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters in {out}", flush=True)
    return out


def raw_answers(out_dir: Path) -> tuple[dict, dict, int]:
    """(task -> acc, (task, doc_id) -> chosen index, loglikelihood requests) from lm_eval's output folder."""
    [results] = sorted(out_dir.rglob("results_*.json"))
    accs = {t: r["acc,none"] for t, r in json.loads(results.read_text())["results"].items() if "acc,none" in r}
    chosen, requests = {}, 0
    for path in out_dir.rglob("samples_*.jsonl"):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        for line in path.read_text().splitlines():
            row = json.loads(line)
            lls = [float(r[0]) for r in row["filtered_resps"]]  # each [loglikelihood, is_greedy]
            chosen[(task, row["doc_id"])] = lls.index(max(lls))
            requests += len(lls)
    return accs, chosen, requests


def wb_answers(store: Path, stdout: str) -> tuple[dict, dict]:
    from workbench.store import Store

    payload = json.loads(stdout)
    run = Store(store).load(payload["run_id"])
    accs = {m["task"]: m["value"] for m in payload["metrics"] if m["metric"] == "acc"}
    chosen = {}
    for task in accs:
        for row in run.samples(f"lm-eval.{task}"):
            lls = row["loglikelihoods"]
            chosen[(task, row["doc_id"])] = lls.index(max(lls))
    return accs, chosen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--tasks", default="mmlu")
    parser.add_argument("--limit", default="20", help="items per MMLU subject")
    parser.add_argument("--batch-size", default="32", help="the HF side's batch size")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/wb-bench-vllm-mmlu"))
    args = parser.parse_args()
    from bench_harness import timed  # a whole process, timed; its stdout kept beside the log
    from harness_tasks import write_override_folder

    data_dir = Path(os.environ.get("WB_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    model = build(work / f"llama-{args.shape}-random", args.shape, args.dtype, args.device)
    tasks_dir = work / "tasks"
    write_override_folder(data_dir, tasks_dir)
    env = {**os.environ, "WB_STORE": str(work / "store"), "WB_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    raw_out = work / f"raw-{time.strftime('%H%M%S')}"
    raw = [str(Path(sys.executable).parent / "lm_eval"), "run", "--model", "hf", "--model_args",
           f"pretrained={model},dtype={args.dtype}", "--tasks", args.tasks, "--include_path", str(tasks_dir),
           "--limit", args.limit, "--batch_size", args.batch_size, "--device", args.device, "--seed", "1234",
           "--log_samples", "--output_path", str(raw_out)]
    ours = [sys.executable, "-m", "workbench", "eval", str(model), "--tasks", args.tasks, "--limit", args.limit,
            "--backend", "vllm", "--dtype", args.dtype, "--seed", "1234", "--no-cache", "--json"]
    raw_s = timed(raw, env, work / "raw.log")
    print(f"raw lm_eval --model hf:      {raw_s:8.1f} s", flush=True)
    wb_s = timed(ours, env, work / "wb-vllm.log")
    stdout = (work / "wb-vllm.stdout").read_text()
    print(f"wb eval --backend vllm:      {wb_s:8.1f} s", flush=True)

    raw_acc, raw_chosen, requests = raw_answers(raw_out)
    wb_acc, wb_chosen = wb_answers(work / "store", stdout)
    same = sum(raw_chosen[k] == wb_chosen.get(k) for k in raw_chosen)
    mean = lambda accs: sum(accs.values()) / len(accs)  # noqa: E731
    print(f"\n{args.shape} random Llama, {args.dtype}, {len(raw_chosen)} MMLU items ({requests} loglikelihood "
          f"requests), {args.tasks} --limit {args.limit}")
    print(f"  raw lm_eval hf: {raw_s:.1f} s, {requests / raw_s:.1f} requests/s, mean acc {mean(raw_acc):.4f}")
    print(f"  wb vllm:        {wb_s:.1f} s, {requests / wb_s:.1f} requests/s, mean acc {mean(wb_acc):.4f}")
    print(f"  throughput ratio vllm / hf: {raw_s / wb_s:.2f}x (goal >= 2); same answer {same}/{len(raw_chosen)}; "
          f"subjects with equal acc {sum(raw_acc[t] == wb_acc.get(t) for t in raw_acc)}/{len(raw_acc)}")


if __name__ == "__main__":
    main()

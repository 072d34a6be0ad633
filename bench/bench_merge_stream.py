"""Peak memory of the streaming merge against PEFT's merge_and_unload, on the same models, and their outputs compared.

    .venv/bin/python bench/bench_merge_stream.py [--workdir /tmp/wb-bench-merge] [--models default,1b]

Models (built once under --workdir, reused after):
- "default": the default model (SmolLM2-135M, float32) re-saved with max_shard_size 100MB (6 shards), and a LoRA
  made by PEFT (r=16 on every linear module, init_lora_weights=False so B is non-zero);
- "1b": a synthetic 1B-shaped Llama (hidden 2048, 16 layers, 32 heads, intermediate 5632, vocab 32000, untied:
  0.95B parameters, bf16, random weights), written one shard at a time (never two copies), and the same kind of LoRA.

Each method runs in a child process of its own. The child imports torch, transformers, peft and wb's merge
modules, reads VmRSS (its baseline), merges into a fresh folder, then reads VmHWM; its peak is VmHWM - baseline.
- streaming: workbench.merge.stream.merge_streaming (with its structural check: every tensor re-read, one at a time);
- peft: from_pretrained(dtype="auto") + PeftModel.from_pretrained + merge_and_unload + save_pretrained.
Target: streaming peak <= (largest shard + adapter file) x 1.1. The outputs are compared tensor by tensor.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SYNTHETIC_1B = dict(hidden_size=2048, num_hidden_layers=16, intermediate_size=5632, vocab_size=32000,
                    num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False,
                    max_position_embeddings=2048)
LORA = dict(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
MB = 1 << 20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


# --- building the models -------------------------------------------------------------------------------------

def build_default(work: Path) -> tuple[Path, Path]:
    base, adapter = work / "default-sharded", work / "default-lora"
    if not (base / "model.safetensors.index.json").exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from workbench.checkpoints.resolve import resolve_checkpoint

        src = resolve_checkpoint("default").path
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype="auto")
        model.save_pretrained(str(base), max_shard_size="100MB")
        AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(base))
        del model
    if not (adapter / "adapter_model.safetensors").exists():
        _make_lora(base, adapter)
    return base, adapter


def build_1b(work: Path) -> tuple[Path, Path]:
    base, adapter = work / "synthetic-1b", work / "synthetic-1b-lora"
    if not (base / "model.safetensors.index.json").exists():
        _write_synthetic(base)
    if not (adapter / "adapter_model.safetensors").exists():
        _make_lora(base, adapter)
    return base, adapter


def _write_synthetic(out: Path, shard_bytes: int = 500 * MB) -> None:
    """Random bf16 weights for every tensor a LlamaForCausalLM has, one shard in memory at a time."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SYNTHETIC_1B, dtype="bfloat16")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(config).state_dict().items()}
    tmp = out.with_name(out.name + ".building")
    tmp.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    groups, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = shape.numel() * 2
        if current and size + nbytes > shard_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    groups.append(current)
    weight_map, total = {}, 0
    for i, names in enumerate(groups, 1):
        file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        shard = {}
        for name in names:
            if name.endswith("norm.weight"):
                shard[name] = torch.ones(shapes[name], dtype=torch.bfloat16)
            else:
                shard[name] = (torch.randn(shapes[name], generator=gen) * 0.02).to(torch.bfloat16)
            weight_map[name] = file
            total += shard[name].numel() * 2
        save_file(shard, str(tmp / file), metadata={"format": "pt"})
        del shard
    (tmp / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    config.save_pretrained(str(tmp))
    tmp.rename(out)


def _make_lora(base: Path, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    get_peft_model(model, LoraConfig(**LORA)).save_pretrained(str(out))


# --- one measured merge, in a child ----------------------------------------------------------------------------

def child(method: str, adapter: Path, out: Path, result: Path) -> None:
    import peft  # noqa: F401
    import torch  # noqa: F401  (the baseline: the interpreter with torch and the libraries imported)
    import transformers  # noqa: F401

    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.merge.stream import merge_streaming

    ckpt = resolve_checkpoint(str(adapter))  # hashes the files, loads no weights
    baseline_kb = _status_kb("VmRSS")
    started = time.perf_counter()
    if method == "streaming":
        merge_streaming(ckpt, out, check="structure")
    else:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(ckpt.base_checkpoint.path), dtype="auto")
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        merged.save_pretrained(str(out))
    seconds = time.perf_counter() - started
    result.write_text(json.dumps({"baseline_kb": baseline_kb, "hwm_kb": _status_kb("VmHWM"), "seconds": seconds}))


def measure(method: str, adapter: Path, out: Path, work: Path) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    result = work / f"{out.name}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WB_HOME": str(work / "wb-home")}
    subprocess.run([sys.executable, __file__, "--child", method, str(adapter), str(out), str(result)], check=True,
                   env=env)
    r = json.loads(result.read_text())
    r["peak_mb"] = (r["hwm_kb"] - r["baseline_kb"]) / 1024
    return r


# --- comparing the outputs -------------------------------------------------------------------------------------

def _tensor_files(folder: Path) -> dict[str, Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return {k: folder / v for k, v in json.loads(index.read_text())["weight_map"].items()}
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {k: folder / "model.safetensors" for k in f.keys()}


def compare(a: Path, b: Path) -> dict:
    """Tensor by tensor: how many are bitwise equal, and the largest |delta| (in float32) over all."""
    import torch
    from safetensors import safe_open

    files_a, files_b = _tensor_files(a), _tensor_files(b)
    common = sorted(set(files_a) & set(files_b))
    equal, worst = 0, 0.0
    for name in common:
        with safe_open(str(files_a[name]), "pt") as fa, safe_open(str(files_b[name]), "pt") as fb:
            ta, tb = fa.get_tensor(name), fb.get_tensor(name)
        if ta.dtype == tb.dtype and torch.equal(ta, tb):
            equal += 1
        else:
            worst = max(worst, float((ta.float() - tb.float()).abs().max()))
    return {"tensors": len(common), "only_in_streaming": sorted(set(files_a) - set(files_b)),
            "only_in_peft": sorted(set(files_b) - set(files_a)), "bitwise_equal": equal, "max_abs_delta": worst}


def bench(name: str, base: Path, adapter: Path, work: Path) -> dict:
    from workbench.checkpoints.lora_plan import plan_merge
    from workbench.checkpoints.resolve import resolve_checkpoint

    plan = plan_merge(resolve_checkpoint(str(adapter)))
    adapter_mb = (adapter / "adapter_model.safetensors").stat().st_size / MB
    largest_mb = plan.largest_shard_bytes / MB
    streaming = measure("streaming", adapter, work / f"{name}-streamed", work)
    peft = measure("peft", adapter, work / f"{name}-peft", work)
    same = compare(work / f"{name}-streamed", work / f"{name}-peft")
    target = (largest_mb + adapter_mb) * 1.1
    return {"model": name, "shards": len(plan.shards), "model_mb": plan.total_bytes / MB, "largest_shard_mb": largest_mb,
            "adapter_mb": adapter_mb, "streaming_peak_mb": streaming["peak_mb"], "peft_peak_mb": peft["peak_mb"],
            "ratio_peft_over_streaming": peft["peak_mb"] / streaming["peak_mb"], "target_mb": target,
            "target_met": streaming["peak_mb"] <= target, "streaming_s": streaming["seconds"],
            "peft_s": peft["seconds"], **same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/wb-bench-merge"))
    parser.add_argument("--models", default="default,1b")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "ADAPTER", "OUT", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, adapter, out, result = args.child
        child(method, Path(adapter), Path(out), Path(result))
        return
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    builders = {"default": build_default, "1b": build_1b}
    rows = []
    for name in args.models.split(","):
        base, adapter = builders[name](work)
        rows.append(bench(name, base, adapter, work))
    print(f"{'model':8} {'shards':>6} {'model MB':>9} {'largest shard MB':>16} {'adapter MB':>10} "
          f"{'streaming peak MB':>17} {'PEFT peak MB':>12} {'PEFT/stream':>11} {'target MB':>9} {'met':>4} "
          f"{'stream s':>8} {'PEFT s':>7} {'bitwise':>9} {'max |d|':>8}")
    for r in rows:
        print(f"{r['model']:8} {r['shards']:>6} {r['model_mb']:>9.1f} {r['largest_shard_mb']:>16.1f} "
              f"{r['adapter_mb']:>10.1f} {r['streaming_peak_mb']:>17.1f} {r['peft_peak_mb']:>12.1f} "
              f"{r['ratio_peft_over_streaming']:>11.2f} {r['target_mb']:>9.1f} {'yes' if r['target_met'] else 'NO':>4} "
              f"{r['streaming_s']:>8.1f} {r['peft_s']:>7.1f} {r['bitwise_equal']:>4}/{r['tensors']:<4} "
              f"{r['max_abs_delta']:>8.2g}")
    for r in rows:
        if r["only_in_streaming"] or r["only_in_peft"]:
            print(f"{r['model']}: only in the streaming output {r['only_in_streaming']}, only in PEFT's "
                  f"{r['only_in_peft']}")
    (work / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"(results also in {work / 'results.json'})")


if __name__ == "__main__":
    main()

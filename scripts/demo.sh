#!/usr/bin/env bash
# The whole workbench on the embedded default model (SmolLM2-135M-Instruct), on CPU, offline:
# train a LoRA adapter -> evaluate base and adapter (task + MMLU/GSM8K slice) -> merge (logits checked)
# -> export GGUF Q8_0 and Q4_K_M (+ Ollama Modelfiles) -> answer the task in llama.cpp, gate the release
# -> compare.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export WB_DATA_DIR="${WB_DATA_DIR:-$(cd .. && pwd)/shared/data}"
OUT="${WB_DEMO_OUT:-wb-out/demo-$(date +%Y%m%d-%H%M%S)}"
export WB_STORE="${WB_STORE:-$OUT/store}"
mkdir -p "$OUT"
wb() { .venv/bin/python -m workbench "$@"; }
run_id() { .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['run_id'])"; }
step() { printf '\n\033[1;36m== %s\033[0m\n' "$*" >&2; }
started=$(date +%s)

step "1. train a LoRA adapter on the contacts task (TRL SFTTrainer)"
wb train contacts-lora -o "$OUT/adapter"

step "2. evaluate base and adapter: contacts task + MMLU/GSM8K slice through lm-evaluation-harness"
base=$(wb eval default --suite demo --json | tee "$OUT/eval-base.json" | run_id)
adapter=$(wb eval "$OUT/adapter" --suite demo --json | tee "$OUT/eval-adapter.json" | run_id)

step "3. adapter vs base"
wb compare "$base" "$adapter"

step "4. merge the adapter (merged logits checked against base + adapter)"
wb merge "$OUT/adapter" -o "$OUT/merged"

step "5. export GGUF Q8_0 and Q4_K_M (llama.cpp's converter and quantizer) with an Ollama Modelfile each"
wb export "$OUT/merged" --format gguf --quant q8_0,q4_k_m -o "$OUT/gguf"
cat "$OUT"/gguf/*-Q8_0.Modelfile

step "6. answer the task in llama.cpp with the chat template embedded in each GGUF; gate the Q8_0 release"
# The release gates (evals/gates/release.yaml) against the adapter's run: exit 1 here would stop the demo.
q8=$(wb eval "$OUT"/gguf/*-Q8_0.gguf --suite demo --no-harness --baseline "$adapter" \
       --gates evals/gates/release.yaml --junit "$OUT/gate.xml" --markdown "$OUT/gate.md" --json | run_id)
cat "$OUT/gate.md"
q4=$(wb eval "$OUT"/gguf/*-Q4_K_M.gguf --suite demo --no-harness --json | run_id)
wb compare "$adapter" "$q8" --samples 3
wb compare "$adapter" "$q4" --samples 3

step "7. everything recorded"
wb runs
echo "demo finished in $(( $(date +%s) - started )) s; outputs in $OUT; store $WB_STORE" >&2
echo "see it: .venv/bin/wb dashboard --store $WB_STORE" >&2

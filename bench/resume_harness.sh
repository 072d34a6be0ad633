#!/bin/bash
# kill -9 a default-model `wb eval` midway, rerun the same command, and show how many requests were recomputed.
#   bash bench/resume_harness.sh [OUT_DIR] [KILL_AFTER_REQUESTS]      (needs sqlite3; WB_DATA_DIR set)
set -u
OUT=${1:-/tmp/wb-resume}; KILL_AT=${2:-300}
SHARED_HOME=${WB_HOME:-$HOME/.cache/ckpt-workbench}
export WB_DATA_DIR=${WB_DATA_DIR:-/work/shared/data} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE \
  TOKENIZERS_PARALLELISM=false WB_HOME=$OUT/home WB_STORE=$OUT/store
mkdir -p "$WB_HOME/models"
ln -sfn "$SHARED_HOME/models/SmolLM2-135M-Instruct" "$WB_HOME/models/SmolLM2-135M-Instruct"  # empty caches
cd "$(dirname "$0")/.."
CMD=(.venv/bin/wb eval default --tasks mmlu_stem --limit 10 --batch-size 8 --seed 1234 --device cpu --dtype float32 --json)
nice -n 10 "${CMD[@]}" > "$OUT/killed.json" 2> "$OUT/killed.log" &
PID=$!
while true; do
  DB=$(ls "$WB_HOME"/lm_eval/requests/*.db 2>/dev/null | head -1)
  if [ -n "$DB" ]; then
    N=$(sqlite3 "file:$DB?mode=ro" "select count(*) from unnamed" 2>/dev/null || echo 0)
    [ "${N:-0}" -ge "$KILL_AT" ] && break
  fi
  kill -0 $PID 2>/dev/null || { echo "the run ended before it was killed"; exit 1; }
  sleep 0.5
done
kill -9 $PID; wait $PID 2>/dev/null
echo "killed with $(sqlite3 "file:$DB?mode=ro" 'select count(*) from unnamed') requests in the cache"
nice -n 10 "${CMD[@]}" > "$OUT/resumed.json" 2> "$OUT/resumed.log" || exit $?
RUN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$OUT/resumed.json")
python3 -c "import json,sys; print('rerun cache:', json.load(open(sys.argv[1]))['harness'][0]['cache'])" \
  "$WB_STORE/runs/$RUN/run.json"

#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, end-to-end tests on the default model included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false
export WB_DATA_DIR="${WB_DATA_DIR:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest "$@"

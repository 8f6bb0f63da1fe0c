#!/usr/bin/env bash
# Build llama.cpp's own binaries for the `tandem bench --peer-llama-cpp DIR` arm.
#
#   scripts/build_peer_llama.sh            # builds once, prints the directory holding the binaries
#   .venv/bin/tandem bench --peer-llama-cpp "$(scripts/build_peer_llama.sh | tail -1)"
#
# The peer must run the same llama.cpp as Tandem, built the same way, or the
# comparison measures compilers and flags instead of speculation.  So this script
# takes the llama.cpp sources that ship inside the llama-cpp-python sdist we pin
# (vendor/llama.cpp) and compiles them with the CMAKE_ARGS our bootstrap chooses
# for this machine (engine/llama/build_flags.py choose_build(); TANDEM_CMAKE_ARGS and
# TANDEM_BACKEND are honoured the same way).
#
# Built: llama-completion (plain decoding) and llama-speculative-simple (draft
# model and n-gram speculation).  Cached per (version, CMAKE_ARGS) in
#   ${TANDEM_PEER_LLAMA_DIR:-${XDG_CACHE_HOME:-~/.cache}/tandem/peer-llama.cpp/<version>-<key>}/bin
# Needs cmake, a C++17 compiler and pip (to fetch the sdist; give a local sdist
# with TANDEM_LLAMA_SDIST=path/to/llama_cpp_python-0.3.36.tar.gz to skip the download).
# Takes ~5 minutes on 2 cores.  Not part of CI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${TANDEM_PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="python3"; fi
fi

# build_flags.py is pure standard library: no venv needed to read the choice.
read -r VERSION KEY CMAKE_ARGS_CHOSEN < <(cd "$ROOT" && "$PY" -c '
from engine.llama.build_flags import LLAMA_CPP_PYTHON_VERSION as v, choose_build
c = choose_build()
print(v, c.key, c.cmake_args)
')

CACHE_BASE="${XDG_CACHE_HOME:-$HOME/.cache}/tandem/peer-llama.cpp"
OUT="${TANDEM_PEER_LLAMA_DIR:-$CACHE_BASE/$VERSION-$KEY}"
BINARIES=(llama-completion llama-speculative-simple)

have_all() {
    for b in "${BINARIES[@]}"; do [[ -x "$OUT/bin/$b" ]] || return 1; done
}

if have_all; then
    echo "peer llama.cpp already built (CMAKE_ARGS=$CMAKE_ARGS_CHOSEN)" >&2
    echo "$OUT/bin"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

SDIST="${TANDEM_LLAMA_SDIST:-}"
if [[ -z "$SDIST" ]]; then
    echo "downloading the llama-cpp-python $VERSION sdist" >&2
    "$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK/dl" >&2
    SDIST="$(ls "$WORK"/dl/llama_cpp_python-*.tar.gz)"
fi
tar -xzf "$SDIST" -C "$WORK"
SRC="$(ls -d "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"

JOBS="$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)"
echo "building llama.cpp from $SDIST with CMAKE_ARGS=$CMAKE_ARGS_CHOSEN ($JOBS jobs)" >&2
# Static libraries: the binaries stay usable after $WORK is gone.  No tests, server,
# network or UI: only the two tools are built.
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of -D flags, split on purpose
GENERATOR=()
if command -v ninja >/dev/null 2>&1; then GENERATOR=(-G Ninja); fi
cmake -S "$SRC" -B "$WORK/build" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    $CMAKE_ARGS_CHOSEN >&2
cmake --build "$WORK/build" --target "${BINARIES[@]}" -j "$JOBS" >&2

mkdir -p "$OUT/bin"
for b in "${BINARIES[@]}"; do cp "$WORK/build/bin/$b" "$OUT/bin/"; done
printf '%s\n' "llama-cpp-python $VERSION vendor/llama.cpp" "CMAKE_ARGS=$CMAKE_ARGS_CHOSEN" > "$OUT/BUILD_INFO"
echo "built ${BINARIES[*]} into $OUT/bin" >&2
echo "$OUT/bin"

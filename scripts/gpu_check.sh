#!/usr/bin/env bash
# The CUDA check of issue 5 §4, for an offline NVIDIA machine that has nvcc, CMake,
# ninja, numpy and huggingface_hub but no network and no room for the real weights.
#
#   scripts/gpu_check.sh --kit      # here: pack sources, wheels and model shapes into .gpu/ (~7 MB)
#   scripts/gpu_check.sh            # there: build, measure, bench; everything under $OUT
#
# There: llama-cpp-python is built from the carried sdist with the CMAKE_ARGS that
# scripts/bootstrap.py would choose on that machine (engine/llama/build_flags.py); the pair is
# the default pair's exact shapes and quant types with random weights
# (scripts/shaped_gguf.py), so decode costs are real and acceptance is not.  Then:
#   1. the decode-cost curves of both models fully offloaded, and the replay of the
#      default pair's real greedy traces (docs/bench/trace-ours-256) under those curves;
#   2. `tandem bench --quick` on the shaped pair: every arm checked token-identical to
#      plain decoding on CUDA, and the plain decoding speed.
set -uo pipefail
KIT=${KIT:-.gpu}
OUT=${OUT:-gpu-results}
LLAMA_VERSION=0.3.36

if [[ "${1:-}" == "--kit" ]]; then
    PY=${PY:-.venv/bin/python}
    MODELS=$($PY -c "from engine.models.paths import models_dir; print(models_dir())")
    mkdir -p "$KIT/wheels"
    $PY -m pip download -q --no-deps -d "$KIT/wheels" diskcache==5.6.3 gguf==0.19.0 platformdirs==4.14.8
    $PY scripts/shaped_gguf.py skeleton "$MODELS/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" "$KIT/target.json.xz"
    $PY scripts/shaped_gguf.py skeleton "$MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" "$KIT/draft.json.xz"
    tmp=$(mktemp -d)
    $PY -m pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$LLAMA_VERSION"
    tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
    src="$tmp/llama_cpp_python-$LLAMA_VERSION" v="$tmp/llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
    # what a CUDA build of the Python package never compiles: other backends, the web UI, models, docs
    rm -rf "$v"/{models,docs,benches,media,.github} "$v"/examples/*/ "$v"/tools/ui "$v"/tools/server/public* \
        "$v"/ggml/src/ggml-{sycl,vulkan,opencl,hexagon,et,metal,cann,musa,webgpu,zdnn,kompute,zendnn,virtgpu}
    tar cJf "$KIT/llama-src.tar.xz" -C "$tmp" "llama_cpp_python-$LLAMA_VERSION"
    rm -rf "$tmp"
    du -sh "$KIT"
    exit 0
fi

mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PATH="$PATH:/usr/local/cuda/bin"
step() { echo; echo "== $(date +%T) $*"; }
# one lease, one command: every step gets at most what is left before DEADLINE seconds
END=$(( $(date +%s) + ${DEADLINE:-560} ))
left() { local l=$(( END - $(date +%s) )); (( l < $1 )) && echo $(( l > 10 ? l : 10 )) || echo "$1"; }

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc; python3 --version; nvcc --version | tail -1

step wheels
SITE=/tmp/site
python3 -m pip install -q --no-index --no-deps --target "$SITE" "$KIT"/wheels/*.whl || exit 1
export PYTHONPATH="$SITE:$PWD"

step "build llama-cpp-python (CUDA)"
ARGS=$(python3 -c "from engine.llama.build_flags import choose_build; c = choose_build(); print(c.cmake_args)")
echo "CMAKE_ARGS=$ARGS"
rm -rf /tmp/llsrc && mkdir -p /tmp/llsrc && tar xJf "$KIT/llama-src.tar.xz" -C /tmp/llsrc
mkdir -p /tmp/m
# the random-weight F16 files are numpy work: write them while nvcc runs
(python3 scripts/shaped_gguf.py fill "$KIT/target.json.xz" /tmp/m/target.f16.gguf --quant F16 &&
 python3 scripts/shaped_gguf.py fill "$KIT/draft.json.xz" /tmp/m/draft.f16.gguf --quant F16) > /tmp/m/fill.log 2>&1 &
fill=$!
t0=$(date +%s)
CMAKE_ARGS="$ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q --no-index --no-deps \
    --no-build-isolation --target "$SITE" "/tmp/llsrc/llama_cpp_python-$LLAMA_VERSION" > "$OUT/build.log" 2>&1
rc=$?
echo "build: rc=$rc in $(( $(date +%s) - t0 )) s"
[[ $rc == 0 ]] || { tail -40 "$OUT/build.log"; exit 1; }

step "shaped pair"
wait $fill || { cat /tmp/m/fill.log; exit 1; }
python3 scripts/shaped_gguf.py quantize /tmp/m/target.f16.gguf /tmp/m/target.gguf 2>&1 | grep -E "quant size|error" || true
python3 scripts/shaped_gguf.py quantize /tmp/m/draft.f16.gguf /tmp/m/draft.gguf 2>&1 | grep -E "quant size|error" || true
rm -f /tmp/m/*.f16.gguf
ls -la /tmp/m
PAIR=(--target /tmp/m/target.gguf --draft /tmp/m/draft.gguf --gpu-layers 99 --draft-gpu-layers 99)

STEPS=${GPU_STEPS:-doctor replay quick}  # a rerun on a fresh machine can skip what it already has
has() { [[ " $STEPS " == *" $1 "* ]]; }

has doctor && step doctor && timeout "$(left 60)" python3 -m engine.cli.main doctor --no-hash || true

has replay && step "cost curves + replay of the real traces" && cp -r docs/bench/trace-ours-256 /tmp/traces &&
timeout "$(left 180)" python3 -m engine.cli.main bench --replay /tmp/traces --costs measure "${PAIR[@]}" --out "$OUT/replay" || true

has quick && step "bench --quick (shaped pair)" &&
timeout "$(left 400)" python3 -m engine.cli.main bench --quick "${PAIR[@]}" --out "$OUT/quick" ${QUICK_ARGS:-} || true

step done
tar czf "$OUT/results.tgz" -C "$OUT" replay quick 2>/dev/null
rm -rf "$OUT/replay" "$OUT/quick"
ls -la "$OUT"

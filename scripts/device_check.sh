#!/usr/bin/env bash
# Issue 14 §3: the many-core CPU and GPU check, one script for a lent machine (one NVIDIA
# GPU, 16 CPU cores, offline, at most 64 MiB carried in).  Extends scripts/gpu_check.sh.
#
#   scripts/device_check.sh --kit      # here: sources, wheels, model skeletons into .gpu/ (~8 MB)
#   scripts/device_check.sh            # there: everything below, results under $OUT
#   DEVICE_DRY_RUN=1 scripts/device_check.sh   # here, on a CPU: the same steps, small (see below)
#
# There:
#   1. llama-cpp-python built with CUDA from the carried sdist (CMAKE_ARGS from
#      engine/llama/build_flags.py), while numpy writes the random-weight models:
#      the default pair's exact shapes (scripts/shaped_gguf.py skeletons of the real files) and
#      a 7B-shaped target: Qwen2.5-Coder-7B-Instruct's published shapes (28 layers, hidden 3584,
#      28 query / 4 KV heads, FFN 18944, vocab 152064, untied output) with the 0.5B's tokenizer
#      padded to 152064 tokens, quantized to llama.cpp's Q4_K_M mix.  Decode costs are real;
#      what the models say is noise, so acceptance comes from the repository's real traces.
#   2. decode-cost curves (every batch size the engine uses) for: 1.5B pair and 7B + 0.5B on the
#      GPU; the 1.5B pair on the CPU with 4, 8 and 16 threads.
#   3. `tandem bench --quick` arms plain / chain / auto on each GPU pair and on the CPU with 16
#      threads: the engine's real overhead per step (time outside llama_decode), and plain speed.
#   4. the real traces (docs/bench/trace-ours-256) replayed on every measured curve, charged the
#      overhead step 3 measured, for projected speed-ups of every policy.
#   5. one JSON: $OUT/device_check.json (curves, overhead per arm, tok/s, projections).
# Every step gets at most what is left of DEADLINE seconds.  Budget (H100 last time: build 211 s):
# the build, the 7B's F16 fill (15 GB, while nvcc runs) and its quantization take ~6 of the 10
# minutes a command may run, so split it over two commands on the same warm machine:
#   STEPS="build models curves" scripts/device_check.sh; STEPS="quick replay" scripts/device_check.sh
set -uo pipefail
KIT=${KIT:-.gpu}
OUT=${OUT:-device-results}
LLAMA_VERSION=0.3.36
DRY=${DEVICE_DRY_RUN:-}

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
END=$(( $(date +%s) + ${DEADLINE:-580} ))
left() { local l=$(( END - $(date +%s) )); (( l < $1 )) && echo $(( l > 10 ? l : 10 )) || echo "$1"; }
STEPS=${STEPS:-build models curves quick replay}
has() { [[ " $STEPS " == *" $1 "* ]]; }
M=${MODELS_TMP:-/tmp/m}
mkdir -p "$M"

if [[ -n "$DRY" ]]; then
    # A CPU dry run of every step with this checkout's llama-cpp-python: the 7B shape with
    # DRY_LAYERS layers (its full width and vocabulary), 2 CPU thread counts, 2 quick prompts.
    PYTHON=${PYTHON:-python3}
    LAYERS7=${DRY_LAYERS:-1}; THREADS=${DRY_THREADS:-"1 2"}; GPU=""; QUICK=(--max-prompts 2 --max-tokens 32)
    export PYTHONPATH="$PWD"
else
    PYTHON=python3
    LAYERS7=28; THREADS="4 8 16"; GPU=(--gpu-layers 99 --draft-gpu-layers 99); QUICK=()
    step machine
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    nproc; python3 --version; nvcc --version | tail -1
    step wheels
    SITE=/tmp/site
    python3 -m pip install -q --no-index --no-deps --target "$SITE" "$KIT"/wheels/*.whl || exit 1
    export PYTHONPATH="$SITE:$PWD"
fi

# ---------------------------------------------------------------- 1. build + models
$PYTHON scripts/shaped_gguf.py reshape "$KIT/draft.json.xz" "$M/7b.json.xz" --layers "$LAYERS7" --hidden 3584 \
    --heads 28 --kv-heads 4 --ffn 18944 --vocab 152064 --name "Qwen2.5 Coder 7B Instruct (shaped)" || exit 1
fill() {  # numpy only: runs while nvcc compiles
    for m in target draft 7b; do
        [[ -f "$M/$m.gguf" ]] && continue
        skel="$KIT/$m.json.xz"; [[ $m == 7b ]] && skel="$M/7b.json.xz"
        $PYTHON scripts/shaped_gguf.py fill "$skel" "$M/$m.f16.gguf" --quant F16 || return 1
    done
}
if has models; then (fill > "$M/fill.log" 2>&1) & fillpid=$!; fi

if [[ -z "$DRY" ]] && has build; then
    step "build llama-cpp-python (CUDA)"
    ARGS=$(python3 -c "from engine.llama.build_flags import choose_build; c = choose_build(); print(c.cmake_args)")
    echo "CMAKE_ARGS=$ARGS"
    rm -rf /tmp/llsrc && mkdir -p /tmp/llsrc && tar xJf "$KIT/llama-src.tar.xz" -C /tmp/llsrc
    t0=$(date +%s)
    CMAKE_ARGS="$ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q --no-index --no-deps \
        --no-build-isolation --target "$SITE" "/tmp/llsrc/llama_cpp_python-$LLAMA_VERSION" > "$OUT/build.log" 2>&1
    rc=$?
    echo "build: rc=$rc in $(( $(date +%s) - t0 )) s"
    [[ $rc == 0 ]] || { tail -40 "$OUT/build.log"; exit 1; }
fi

if has models; then
    step "shaped models (1.5B pair, 7B target)"
    wait $fillpid || { cat "$M/fill.log"; exit 1; }
    for m in target draft 7b; do
        [[ -f "$M/$m.f16.gguf" ]] || continue
        $PYTHON scripts/shaped_gguf.py quantize "$M/$m.f16.gguf" "$M/$m.gguf" 2>&1 | grep -E "quant size|error" || true
        rm -f "$M/$m.f16.gguf"
    done
    ls -la "$M"
fi

# ---------------------------------------------------------------- 2-4. curves, quick, replay
# name | model arguments
CONFIGS=()
if [[ -z "$DRY" ]]; then
    # most wanted first: a step that runs out of DEADLINE cuts the last ones short
    CONFIGS+=("gpu-7b|--target $M/7b.gguf --draft $M/draft.gguf ${GPU[*]}")
else
    CONFIGS+=("cpu-7b-${LAYERS7}layers|--target $M/7b.gguf --draft $M/draft.gguf --threads 2")
fi
for t in $(tr ' ' '\n' <<< "$THREADS" | sort -rn); do
    CONFIGS+=("cpu${t}-1.5b|--target $M/target.gguf --draft $M/draft.gguf --threads $t")
done
[[ -z "$DRY" ]] && CONFIGS+=("gpu-1.5b|--target $M/target.gguf --draft $M/draft.gguf ${GPU[*]}")
QUICK_ON=${QUICK_ON:-"gpu-7b cpu16-1.5b gpu-1.5b cpu2-1.5b"}
cp -r docs/bench/trace-ours-256 /tmp/traces 2>/dev/null || true

for c in "${CONFIGS[@]}"; do
    name=${c%%|*}; read -r -a args <<< "${c#*|}"
    d="$OUT/$name"; mkdir -p "$d"
    # CPU curves: hide the GPU, or ggml would offload the largest batches to it
    hide=(); [[ $name == cpu* ]] && hide=(env CUDA_VISIBLE_DEVICES=)
    if has curves; then
        step "cost curves: $name"
        timeout "$(left 120)" "${hide[@]}" $PYTHON -m engine.cli.main bench --replay /tmp/traces --costs measure "${args[@]}" \
            --out "$d/curves" > "$d/curves.log" 2>&1 || echo "curves $name: rc=$?"
        ls "$d"/curves/costs-*.json 2>/dev/null | tail -1
    fi
    if has quick && [[ " $QUICK_ON " == *" $name "* ]]; then
        step "bench --quick plain/chain/auto: $name"
        timeout "$(left 200)" "${hide[@]}" $PYTHON -m engine.cli.main bench --quick --arms plain chain auto "${args[@]}" \
            "${QUICK[@]}" --out "$d/quick" > "$d/quick.log" 2>&1 || echo "quick $name: rc=$?"
        grep -E "^\| (plain|chain|auto) " "$d/quick/results.md" 2>/dev/null | head -3
    fi
done

if has replay; then
    step "replay of the real traces on every curve, with the measured overhead"
    $PYTHON - "$OUT" <<'EOF'
import json, subprocess, sys
from pathlib import Path
out = Path(sys.argv[1])
def overheads(d):
    """ms per step outside llama_decode, per arm, from a quick run's results.json."""
    try:
        runs = json.loads((d / "quick" / "results.json").read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return {}
    per = {}
    for r in runs:
        if r.get("t_decode") is None or not r.get("steps"):
            continue
        arm = r["arm"]
        a = per.setdefault(arm, [0.0, 0])
        a[0] += (r["t_generate"] - r["t_decode"]) * 1e3
        a[1] += r["steps"]
    return {arm: s / n for arm, (s, n) in per.items() if n}
quick_dirs = {p.parent.name: p.parent for p in out.glob("*/quick/results.json")}
# CPU curves without their own quick run borrow the 16-thread (or any CPU) overhead
fallback = next((overheads(quick_dirs[k]) for k in sorted(quick_dirs) if k.startswith("cpu")), {})
report = {"configs": {}}
for d in sorted(p for p in out.iterdir() if p.is_dir()):
    costs = sorted((d / "curves").glob("costs-*.json"))
    if not costs:
        continue
    oh = overheads(d) or (fallback if d.name.startswith("cpu") else {})
    charged = oh.get("auto", oh.get("plain", 0.0))
    rep = d / "replay"
    subprocess.run([sys.executable, "-m", "engine.cli.main", "bench", "--replay", "/tmp/traces", "--costs",
                    str(costs[-1]), "--overhead-ms", f"{charged:.3f}", "--out", str(rep)],
                   stdout=subprocess.DEVNULL, check=False)
    replay = next(iter(sorted(rep.glob("replay-costs-*.json"))), None)
    quick = {}
    try:
        quick = json.loads((d / "quick" / "results.json").read_text()).get("summary", {})
    except (OSError, ValueError):
        pass
    report["configs"][d.name] = {
        "costs": json.loads(costs[-1].read_text()),
        "overhead_ms_per_step": oh, "overhead_charged_ms": charged,
        "quick_summary": quick,
        "replay": json.loads(replay.read_text()) if replay else None,
    }
(out / "device_check.json").write_text(json.dumps(report, indent=1))
print(f"{out}/device_check.json: {', '.join(report['configs'])}")
EOF
fi

step done
tar czf "$OUT/results.tgz" -C "$OUT" --exclude results.tgz . 2>/dev/null
ls -la "$OUT"

#!/usr/bin/env bash
# The GPU check of issue 19, for one NVIDIA GPU machine with CUDA builds of JAX and PyTorch, no
# TensorFlow, no Keras and no package registry. Everything else travels in the bundle that
# benchmarks/gpu_bundle.sh makes (pure-Python and cp312 wheels + Fashion-MNIST's IDX files).
#
#   benchmarks/gpu_check.sh OUTDIR
#
# Steps (results in OUTDIR: results.json, summary.txt, and each step's raw output):
#   0. a venv over the system's packages (its CUDA JAX / PyTorch), the bundle's wheels installed
#   1. `hpsearch devices` on the real nvidia-smi, and under CUDA_VISIBLE_DEVICES
#   2. epoch time of 784-512-10 @ 1024, data on the GPU, JAX and PyTorch, float32 and mixed_float16
#   3. an out-of-memory study (one configuration too big for a 1/4 share): it fails alone
#   4. trials per minute of a short fashion-mlp study, --workers K --per-gpu K, K = 1 2 4 8, with
#      each worker's GPU memory sampled by nvidia-smi (its peak against 1/K of the card)
# Environment: GPU_CHECK_BUNDLE (default benchmarks/gpu_bundle), GPU_CHECK_PYTHON (python3),
# GPU_CHECK_VENV=0 (install into that python instead of a venv), GPU_CHECK_SECONDS (trials start
# for this long per K, 25), GPU_CHECK_BACKENDS ("jax torch"), GPU_CHECK_KS_JAX ("1 2 4 8"),
# GPU_CHECK_KS_TORCH ("1 8"), GPU_CHECK_BUDGET (s, 450: a step that would not fit is skipped, so
# the summary is written within one 8-minute call), GPU_CHECK_FAKE_SMI=1 (rehearsal on a CPU: a
# FAKE nvidia-smi reports one H200; the steps run on the CPU with small data).
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=${GPU_CHECK_BUNDLE:-$ROOT/benchmarks/gpu_bundle}
PY=${GPU_CHECK_PYTHON:-python3}
SECONDS_PER_K=${GPU_CHECK_SECONDS:-25}
BACKENDS=${GPU_CHECK_BACKENDS:-jax torch}
KS_jax=${GPU_CHECK_KS_JAX:-1 2 4 8}
KS_torch=${GPU_CHECK_KS_TORCH:-1 8}
BUDGET=${GPU_CHECK_BUDGET:-450}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }
start=$SECONDS
fits() {  # fits SECONDS WHAT: is there time left for a step of about SECONDS?
    if (( SECONDS - start + $1 > BUDGET )); then log "SKIPPED (time budget $BUDGET s): $2"; return 1; fi
}

# 0. the environment ------------------------------------------------------------------------
if [[ ${GPU_CHECK_FAKE_SMI:-0} == 1 ]]; then
    mkdir -p "$WORK/fake-bin"
    cat > "$WORK/fake-bin/nvidia-smi" <<'EOF'
#!/bin/sh
# FAKE nvidia-smi (rehearsal on a CPU machine): one H200, no processes
case "$*" in
  -L) echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-fake)";;
  *query-compute-apps*) ;;
  *query-gpu=memory.total\ *) echo "143771";;
  *query-gpu=name\ *) echo "NVIDIA H200";;
  *) echo "0, GPU-00000000-fake, NVIDIA H200, 143771, 0, 0";;
esac
EOF
    chmod +x "$WORK/fake-bin/nvidia-smi"
    export PATH="$WORK/fake-bin:$PATH"
    log "FAKE nvidia-smi on PATH: a rehearsal, not a GPU run"
fi
if [[ ${GPU_CHECK_VENV:-1} == 1 ]]; then
    "$PY" -m venv --system-site-packages "$WORK/venv" && PY=$WORK/venv/bin/python
fi
# what the worker path needs besides the machine's own numpy / JAX / PyTorch
"$PY" -m pip install --quiet --no-index --find-links "$BUNDLE/wheels" \
    keras keras-tuner six optuna optuna-dashboard pyyaml tqdm 2>&1 | tee -a "$OUT/log.txt"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HPSEARCH_OFFLINE=1 HPSEARCH_DATA_DIR="$BUNDLE/data"
export HPSEARCH_LOCK_DIR="$WORK/locks" PYTHONUNBUFFERED=1
hp() { "$PY" -m search "$@"; }
GPU=0
if nvidia-smi -L > "$OUT/nvidia-smi-L.txt" 2>&1 && [[ ${GPU_CHECK_FAKE_SMI:-0} != 1 ]]; then GPU=1; fi
TOTAL=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -n1 | tr -d ' ')
NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
"$PY" - "$OUT/meta.json" "$GPU" "${TOTAL:-0}" "${NAME:-none}" <<'EOF'
import json, platform, sys
from importlib.metadata import PackageNotFoundError, version
versions = []
for m in ("keras", "keras-tuner", "optuna", "jax", "jaxlib", "torch", "numpy", "tensorflow"):
    try:
        versions.append(f"{m} {version(m)}")
    except PackageNotFoundError:
        versions.append(f"{m} not installed")
meta = {"gpu": sys.argv[2] == "1", "memory_total_mib": float(sys.argv[3] or 0), "gpu_name": sys.argv[4],
        "python": platform.python_version(), "versions": ", ".join(versions)}
open(sys.argv[1], "w").write(json.dumps(meta, indent=2))
print(meta)
EOF
log "setup done in $((SECONDS - start)) s; GPU=$GPU ${NAME:-}"

# 1. devices --------------------------------------------------------------------------------
{ nvidia-smi 2>&1 | head -n 20; } > "$OUT/nvidia-smi.txt"
hp devices --workers 4 --per-gpu 4 > "$OUT/devices.txt" 2>&1
hp devices --workers 4 --per-gpu 4 --json > "$OUT/devices.json" 2>&1
CUDA_VISIBLE_DEVICES=0 hp devices --workers 2 > "$OUT/devices-cvd0.txt" 2>&1
CUDA_VISIBLE_DEVICES=-1 hp devices --workers 2 > "$OUT/devices-cvd-hidden.txt" 2>&1
log "1. devices: $(head -n 3 "$OUT/devices.txt" | tr '\n' ' ')"

# 2. epoch time, per backend ----------------------------------------------------------------
LIMIT=(); [[ $GPU == 1 ]] || LIMIT=(--limit 3000)
for b in $BACKENDS; do
    fits 60 "2. epoch $b" || continue
    KERAS_BACKEND=$b timeout 150 "$PY" "$ROOT/benchmarks/gpu_check.py" epoch --out "$OUT/epoch-$b.json" "${LIMIT[@]}" \
        > "$OUT/epoch-$b.log" 2>&1
    log "2. epoch $b: exit $? $(tail -c 300 "$OUT/epoch-$b.log" | tr '\n' ' ' | cut -c1-200)"
done

# 3. a trial too big for a 1/4 share fails alone; the worker goes on (before the K sweep, which
#    takes what time is left) -------------------------------------------------------------
GPUFLAG=(); [[ $GPU == 1 ]] && GPUFLAG=(--gpu)
"$PY" "$ROOT/benchmarks/gpu_check.py" spaces "$OUT" "${GPUFLAG[@]}"
for b in $BACKENDS; do
    fits 60 "3. OOM study $b" || continue
    timeout 120 "$PY" -m search run "$OUT/oom.yaml" --study "oom-$b" --storage "sqlite:///$OUT/oom-$b.db" \
        --workers 1 --per-gpu 4 --backend "$b" --max-memory-growth 0 > "$OUT/oom-$b.log" 2>&1
    echo $? > "$OUT/oom-$b.code"
    log "3. OOM study $b: exit $(cat "$OUT/oom-$b.code")"
done

# 4. trials per minute with K workers on the GPU; nvidia-smi samples each process' memory ---
for b in $BACKENDS; do
    ks=KS_$b
    for k in ${!ks}; do
        fits $((SECONDS_PER_K + 60)) "4. $b K=$k" || continue
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 500 \
            > "$OUT/mem-$b-$k.csv" 2>/dev/null &
        smi=$!
        t0=$(date +%s%N)
        timeout $((SECONDS_PER_K + 120)) "$PY" -m search run "$OUT/short.yaml" --study "k-$b-$k" \
            --storage "sqlite:///$OUT/k-$b-$k.db" --workers "$k" --per-gpu "$k" --device auto \
            --backend "$b" --timeout "$SECONDS_PER_K" --max-memory-growth 0 > "$OUT/run-$b-$k.log" 2>&1
        code=$?
        echo "$(( ($(date +%s%N) - t0) / 1000000 )) $code" > "$OUT/wall-$b-$k.txt"  # ms, exit code
        kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
        log "4. $b K=$k: exit $code, $(grep -c COMPLETE "$OUT/run-$b-$k.log") COMPLETE lines"
    done
done

"$PY" "$ROOT/benchmarks/gpu_check.py" summarize "$OUT" | tee -a "$OUT/log.txt"
log "done in $((SECONDS - start)) s"
rm -rf "$WORK"

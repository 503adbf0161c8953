#!/usr/bin/env bash
# One prepared session on a lent GPU machine (see ../shared/device/README.md): everything edgec checks on a GPU,
# in one call, each phase bounded in time, logs and JSON under $OUT (at most 8 files come back).
#
#   bash ../shared/device/prepare.sh                       # here, once: copies the kit into .device/
#   device run, carry [".device"]:  bash benchmarks/gpu_session.sh [PHASES]
#
# PHASES (default "gpu kernels recipes ptq suite"), each with its own time limit:
#   gpu      pytest -m gpu (kernels on the GPU, GPU training, TF32-free references)
#   kernels  benchmarks/kernels.py: custom kernels vs cuBLAS/cuDNN, L2 flushed, device and end-to-end time
#   recipes  benchmarks/gpu_recipes.py: every built-in image recipe built with train.device cuda
#   ptq      benchmarks/ptq_robustness.py: the mnist recipe, seeds 0-4, 5 builds at once
#   suite    the whole test suite with pytest-xdist on every core
# Every phase's output goes to $OUT/session.log (the device returns at most 8 files); JSON beside it.
set -uo pipefail
OUT=${OUT:-/tmp/edgec-gpu-out}
mkdir -p "$OUT"
PHASES=${1:-"gpu kernels recipes ptq suite"}
LOG="$OUT/session.log"
source .device/setup_gpu.sh 2>&1 | tee "$LOG"
export PYTHONPATH=$(ls -d /tmp/pycuda-2026.1/build/lib.* 2>/dev/null | head -1):/tmp/site
export EDGEC_SHARED_DATA=${EDGEC_SHARED_DATA:-$(cd ../shared/data 2>/dev/null && pwd)}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee -a "$LOG"

summary=()
phase() {  # phase NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "/tmp/phase-$name.log" 2>&1
  local rc=$?
  summary+=("$(printf '%-8s rc=%-4s %4ss' "$name" "$rc" "$((SECONDS - t0))")")
  { echo "==================== $name: rc=$rc in $((SECONDS - t0)) s"; cat "/tmp/phase-$name.log"; } >> "$LOG"
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"; tail -n 25 "/tmp/phase-$name.log"
}
for p in $PHASES; do
  case $p in
    gpu)     phase gpu 100 python3 -m pytest -q -m gpu -rs -p no:cacheprovider ;;
    kernels) phase kernels ${KERNELS_S:-150} python3 benchmarks/kernels.py --out "$OUT/kernels.json" ;;
    recipes) phase recipes 140 python3 benchmarks/gpu_recipes.py --data "$EDGEC_SHARED_DATA/mnist" \
                 --jobs 8 --build-timeout 120 --out "$OUT/gpu_recipes.json" ;;
    ptq)     phase ptq 90 python3 benchmarks/ptq_robustness.py --data "$EDGEC_SHARED_DATA/mnist" --recipes mnist \
                 --jobs 5 --out "$OUT/ptq_mnist.json" ;;
    suite)   phase suite 110 python3 -m pytest -q -n 16 -p no:cacheprovider --maxfail 30 --timeout 200 ;;
    *) echo "unknown phase $p" ;;
  esac
done
echo; echo "== summary"; printf '%s\n' "${summary[@]}"

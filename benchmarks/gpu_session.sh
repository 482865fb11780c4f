#!/bin/bash
# One device call that checks, on a lent CUDA GPU, what the CPU machines cannot: gsplat's kernels built by
# `bridge build-kernels`, our PyTorch rasterizer against gsplat's (tests/test_raster_gpu.py), packed
# rasterization with visible-only Adam, then our trainer against gsplat's simple_trainer over seeds
# (benchmarks/bench_train_gpu.py). Every stage has its own time box and writes its results as it ends.
#
# Set-up on the CPU machine (once; .gpu/ is ignored by git), as BENCHMARKS.md's recipe says:
#   .gpu/kit (../shared/gpu-kit), .gpu/whl (the cp312 wheels), .gpu/data/statue_of_liberty (images, sparse)
# Device tool: carry [".gpu"], timeout 590, command:
#   bash benchmarks/gpu_session.sh
# Options by environment: BUDGET (s for the whole script, default 560), STEPS (7000), SEEDS (0,1),
# RUNS (anchor,ours_va,ours_fast: simple_trainer, visible-only Adam alone, the fast flags; ours without
# speed-ups matched simple_trainer bit for bit on the CPU, BENCHMARKS.md), DATA (.gpu/data/statue_of_liberty). DRY=1: a tiny run on the CPU
# (no wheels, no kernels, no simple_trainer) to check the script itself before spending device time.
# Results: $OUT/env.txt, build.log, raster.json, packed.txt, train.log, train/summary.md and
# results.json, logs.tgz (only 8 files come back from a device call: keep it at that).
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
OUT=${OUT:-/tmp/gpu-session}; mkdir -p "$OUT"
BUDGET=${BUDGET:-560}; STEPS=${STEPS:-7000}; SEEDS=${SEEDS:-0,1}; RUNS=${RUNS:-anchor,ours_va,ours_fast}
DATA=${DATA:-.gpu/data/statue_of_liberty}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-14}
FUSED=
if [ -z "${DRY:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
  ( cd .gpu/kit/fused-ssim && timeout 240 $PY setup.py build_ext --inplace > /tmp/fused.log 2>&1 ) &
  FUSED=$!
else
  export PYTHONPATH=$PWD
fi

{ nvidia-smi
  $PY -c "import torch,sys;print(sys.version, torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  which nvcc && nvcc --version | tail -1; nproc
  echo "--- check before"; timeout 90 $PY -m bridge check --json; } > "$OUT/env.txt" 2>&1

echo "[$(el)s] build-kernels" >> "$OUT/env.txt"
if [ -z "${DRY:-}" ]; then
  timeout 200 $PY -m bridge build-kernels > "$OUT/build.log" 2>&1; echo "exit $? at $(el)s" >> "$OUT/build.log"
fi
{ echo "[$(el)s] --- check after"; timeout 60 $PY -m bridge check --json; } >> "$OUT/env.txt" 2>&1

# The rasterizer's parity with gsplat (images, gradients, culling), after the CPU machines changed it.
echo "[$(el)s] raster parity" >> "$OUT/env.txt"
if [ -z "${DRY:-}" ]; then timeout 120 $PY tests/test_raster_gpu.py cuda > "$OUT/raster.json" 2>"$OUT/raster.err"
else timeout 120 $PY tests/test_raster_gpu.py cpu > "$OUT/raster.json" 2>"$OUT/raster.err"; fi
echo "exit $? at $(el)s" >> "$OUT/raster.err"

# Packed rasterization with visible-only Adam against unpacked: the same result, its time and memory.
if [ -z "${DRY:-}" ]; then SMALL="--steps 3000 --downscale 2 --device cuda"; else SMALL="--steps 20 --downscale 16 --device cpu"; fi
for flags in "" "--packed"; do
  name=run${flags//-/_}
  { echo "[$(el)s] visible-adam $flags"
    timeout 90 $PY -m bridge train --model "$DATA/sparse/0" --images "$DATA/images" --out "/tmp/gs-$name" $SMALL \
      --visible-adam $flags --progress-every 500 --snapshot-every 0 2>&1 | grep '"type":"progress"' | tail -1
    echo "exit ${PIPESTATUS[0]}"; cat "/tmp/gs-$name/metrics.json"; echo; } >> "$OUT/packed.txt" 2>&1
done

[ -n "$FUSED" ] && { wait $FUSED; tail -3 /tmp/fused.log >> "$OUT/env.txt"; }
LEFT=$(( BUDGET - $(el) ))
echo "[$(el)s] train bench, deadline $LEFT s" >> "$OUT/env.txt"
if [ -z "${DRY:-}" ]; then BENCH="--steps $STEPS --runs $RUNS --seeds $SEEDS"; else BENCH="--dry --runs ours_va,ours_fast --seeds 0"; fi
timeout $(( LEFT + 20 )) $PY benchmarks/bench_train_gpu.py --data "$DATA" --kit "$PWD/.gpu/kit" --out "$OUT/train" \
  $BENCH --deadline "$LEFT" > "$OUT/train.log" 2>&1
echo "[$(el)s] done" >> "$OUT/env.txt"
tar -czf "$OUT/logs.tgz" -C /tmp --ignore-failed-read --exclude='*.ply' --exclude='*.pt' --exclude='ckpts' \
  --exclude='checkpoints' --exclude='tb' --exclude='renders' bench_train_gpu_work fused.log 2>/dev/null
ls -la "$OUT"

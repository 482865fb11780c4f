#!/bin/bash
# One device call that checks, on a lent CUDA GPU, what the CPU machines cannot: gsplat's kernels built by
# `bridge build-kernels`, our PyTorch and compiled (Warp) rasterizers against gsplat's
# (tests/test_raster_gpu.py: images, gradients, culling), their time per training step against gsplat's
# (benchmarks/bench_raster_gpu.py: Warp's target is within 2x), packed rasterization with visible-only
# Adam, then our trainer on gsplat's kernels against it on Warp's (7,000 steps: within 0.3 dB held out)
# and against gsplat's simple_trainer, over seeds (benchmarks/bench_train_gpu.py). Every stage has its
# own time box and writes its results as it ends.
#
# Set-up on the CPU machine (once; .gpu/ is ignored by git), as BENCHMARKS.md's recipe says:
#   .gpu/kit (../shared/gpu-kit), .gpu/whl (the cp312 wheels), .gpu/data/statue_of_liberty (images, sparse)
# Device tool: carry [".gpu"], timeout 590, command:
#   bash benchmarks/gpu_session.sh
# Options by environment: BUDGET (s for the whole script, default 560), STEPS (7000), SEEDS (0,1),
# RUNS (ours,ours_warp,anchor,ours_va: our trainer on gsplat's kernels and on Warp's, simple_trainer,
# visible-only Adam alone; ours without speed-ups matched simple_trainer bit for bit on the CPU,
# BENCHMARKS.md), DATA (.gpu/data/statue_of_liberty). The .gpu/whl wheels must include warp-lang
# (cp312 has none of its own: py3-none-manylinux_2_28_x86_64). DRY=1: a tiny run on the CPU (no
# wheels, no kernels, no simple_trainer) to check the script itself before spending device time.
# Results: $OUT/env.txt, build.log, raster.json, raster.log (parity's stderr, then the per-step
# timings), packed.txt, train.log, train/summary.md and results.json, logs.tgz (9 files).
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
OUT=${OUT:-/tmp/gpu-session}; mkdir -p "$OUT"
BUDGET=${BUDGET:-560}; STEPS=${STEPS:-7000}; SEEDS=${SEEDS:-0,1}; RUNS=${RUNS:-ours,ours_warp,anchor,ours_va}
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
# (The compiled rasterizer compiles its CUDA kernels on first use, through Warp's NVRTC: within this box.)
if [ -z "${DRY:-}" ]; then timeout 150 $PY tests/test_raster_gpu.py cuda > "$OUT/raster.json" 2>"$OUT/raster.log"
else timeout 150 $PY tests/test_raster_gpu.py cpu > "$OUT/raster.json" 2>"$OUT/raster.log"; fi
echo "exit $? at $(el)s" >> "$OUT/raster.log"

# Time per training step: PyTorch, Warp and gsplat's kernels on the same scenes (Warp's target: within 2x).
echo "[$(el)s] raster bench" >> "$OUT/env.txt"
if [ -z "${DRY:-}" ]; then
  for size in "--splats 100000 --width 1000 --height 660" "--splats 400000 --width 1600 --height 1060"; do
    timeout 90 $PY benchmarks/bench_raster_gpu.py $size --steps 50 --warmup 5 >> "$OUT/raster.log" 2>&1
    echo "exit $? at $(el)s" >> "$OUT/raster.log"
  done
else
  timeout 90 $PY benchmarks/bench_raster_gpu.py --device cpu --splats 2000 --width 128 --height 96 --steps 2 \
    --warmup 1 >> "$OUT/raster.log" 2>&1
  echo "exit $? at $(el)s" >> "$OUT/raster.log"
fi

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
if [ -z "${DRY:-}" ]; then BENCH="--steps $STEPS --runs $RUNS --seeds $SEEDS"; else BENCH="--dry --runs ours_va,ours_warp --seeds 0"; fi
timeout $(( LEFT + 20 )) $PY benchmarks/bench_train_gpu.py --data "$DATA" --kit "$PWD/.gpu/kit" --out "$OUT/train" \
  $BENCH --deadline "$LEFT" > "$OUT/train.log" 2>&1
echo "[$(el)s] done" >> "$OUT/env.txt"
tar -czf "$OUT/logs.tgz" -C /tmp --ignore-failed-read --exclude='*.ply' --exclude='*.pt' --exclude='ckpts' \
  --exclude='checkpoints' --exclude='tb' --exclude='renders' bench_train_gpu_work fused.log 2>/dev/null
ls -la "$OUT"

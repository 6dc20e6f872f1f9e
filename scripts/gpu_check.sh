#!/usr/bin/env bash
# Every GPU check of the open issues, in one short run on a lent GPU machine (device time is scarce:
# about 15 minutes a task). Prepare here first: bash scripts/gpu_wheels.sh; then call the device
# tool with carry [".whl"] and the command `bash scripts/gpu_check.sh`. Results land in $OUT
# (window_sweep.md/.csv/.png, train_step.md, log.txt); copy them into benchmarks/RESULTS.md.
#   1. the window sweep on the GPU: the original eager, the original compiled, dac-jax (float32),
#      windows 0.38-20 s (issue 17);
#   2. the opt-in precisions: dac-jax in TF32 and in bfloat16 beside the original (codes equal and
#      time per chunk, 0.38 and 5 s), and their code match against float32 on speech, music, noise
#      and silence for random 44 kHz and the trained demo model (issue 17);
#   3. one training step beside the original's, 16 kHz, batch 4 x 0.38 s (issue 15).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/gpu}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, torch.cuda.get_device_name(0))"

# ~6 min: torch.compile compiles each window's graphs afresh (20-50 s each), so four windows that span
# the range, the paper's long-window losses (5-20 s) included
timeout 360 python3 -m benchmarks.window_sweep --device gpu --windows 0.38 1 5 20 --reps 3 \
    --file_seconds 0 --output "$out/sweep"
cp "$out"/sweep/*/window_sweep.* "$out"/ 2>/dev/null

# ~2 min: the opt-ins (dac-jax compiles quickly; the compiled original was measured above)
for p in tf32 bfloat16; do
    timeout 60 python3 -m benchmarks.window_sweep --device gpu --windows 0.38 5 --reps 3 --file_seconds 0 \
        --no_compiled --precision "$p" --output "$out/sweep_$p"
    cp "$out"/sweep_$p/*/window_sweep.md "$out/window_sweep_$p.md" 2>/dev/null
done
timeout 60 python3 -m benchmarks.precision_codes --precisions tf32 bfloat16 | tee "$out/precision_codes.md"

# ~2.5 min: the 16 kHz step (44 kHz's compile would not fit the budget beside the sweep)
timeout 150 python3 -m benchmarks.train_step --presets 16khz --steps 3 --device gpu --output "$out/ts_16khz"
cp "$out"/ts_16khz/train_step.md "$out/train_step.md" 2>/dev/null
ls -la "$out"

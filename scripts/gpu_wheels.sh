#!/usr/bin/env bash
# Fetch, on a machine with the package registries, the wheels that scripts/gpu_check.sh installs on
# a GPU machine that has none: its image already holds CUDA JAX, flax, optax, torch, torchaudio,
# numpy, scipy, matplotlib, numba; missing are soundfile, the original DAC and audiotools and their
# pure-Python needs (versions as the CPU environment's). Python 3.12, x86-64, into .whl/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for p in soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 julius==0.2.8 flatten-dict==0.5.0 markdown2==2.5.5 \
         randomname==0.2.1 fire==0.7.1 termcolor==3.3.0 ffmpy==1.0.0 pyloudnorm==0.2.0 future==1.0.0 \
         librosa==0.11.0 audioread==3.1.0 soxr==1.1.0 pooch==1.9.0 decorator==5.3.1 argbind==0.3.9 \
         docstring-parser==0.18.0 standard-aifc standard-sunau standard-chunk \
         descript-audio-codec==1.0.0 descript-audiotools==0.7.2; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "$p" 2>/dev/null \
        || python3 -m pip wheel -q --no-deps -w .whl "$p"  # pure-Python sdists (randomname, argbind)
done
ls .whl

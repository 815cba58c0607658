#!/usr/bin/env bash
# Download (here, with network) the wheels the GPU machine lacks into .whl/ (ignored by git), for
# benchmarks/gpu_check.sh to install there without network. The machine has Python 3.12, CUDA 13,
# cupy-cuda13x, numba-cuda, numpy, torch, pytest and hypothesis.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_34_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" \
    -d .whl nvidia-nvcomp-cu13 nvidia-libnvcomp-cu13 deflate zlib-ng param pyfaidx pyBigWig pybigtools
ls -la .whl
du -sh .whl

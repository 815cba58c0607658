#!/usr/bin/env bash
# Everything the GPU issue asks of a lent GPU machine, in one call (under 8 minutes):
#   1. install the carried wheels (benchmarks/gpu_wheels.sh fetched them into .whl/ beforehand);
#   2. pytest -m gpu (parity with the CPU on every fixture, buffer reuse, DLPack, corrupt blocks);
#   3. the GPU benchmark (benchmarks/bench_gpu.py): S1, S2, S3 at batch 256 / 1024 / 4096, cuda vs
#      hybrid vs the CPU backend on every core (and bigwig-loader when installed).
# Results go to $OUT (the device tool's folder) or benchmarks/out/gpu. Dry run without a GPU:
#   BENCH_ARGS=--dry-run bash benchmarks/gpu_check.sh   (tests skip; the benchmark runs tiny, simulated)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 - <<'PY'
import numpy, numba, cupy
import numba.cuda as nc
from bwloader_core.device import Device, cuda_unavailable_reason, nvcomp_unavailable_reason
print("numpy", numpy.__version__, "numba", numba.__version__, "cupy", cupy.__version__)
print("cuda:", cuda_unavailable_reason() or "usable", "| nvcomp:", nvcomp_unavailable_reason() or "usable")
print("device:", Device.cuda().name)
PY
} 2>&1 | tee "$OUT/env.txt"
timeout 200 python3 -m pytest -q -m gpu tests/test_gpu.py tests/test_targets_device.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
timeout 330 python3 benchmarks/bench_gpu.py --genome-mb "${GENOME_MB:-60}" --rounds "${ROUNDS:-3}" \
    --out "$OUT/gpu_bench.json" --md "$OUT/gpu_bench.md" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}
echo "gpu tests exit $tests_rc, benchmark exit $bench_rc"
exit $(( tests_rc || bench_rc ))

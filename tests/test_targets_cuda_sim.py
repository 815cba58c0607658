"""Strand pairs, value transforms and a mixture through the GPU pipeline in numba's CUDA simulator
(NumPy stands in for CuPy): the same bits as the CPU path. A subprocess, as the simulator must be
switched on before numba is imported."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    import stream_data
    from bwloader_core.config import LoaderConfig
    d = stream_data.write_stream_data({tmp!r}, seed=3)
    kw = dict(bigwig_paths=d.bigwig_paths, sequence_length=200, window_size=10, reduce="sum", batch_size=4,
              batches_per_epoch=2, reverse_complement=True, strand_pairs=[["track0", "track1"]],
              value_transforms=[{{"step": "power", "exponent": 0.75, "threshold": -1}},
                                {{"step": "soft_clip", "threshold": 2}}, "log1p"],
              regions={{"a": {{"regions": [["chr1", 0, 50000]], "weight": 1}}, "b": "all"}},
              dtype="bfloat16", num_workers=1, seed=5)
    out = {{}}
    for backend in ("cpu", "cuda"):
        with LoaderConfig(backend=backend, **kw).build() as ds:
            out[backend] = list(ds)
    assert len(out["cpu"]) == len(out["cuda"]) == 2
    for a, b in zip(out["cpu"], out["cuda"]):
        assert np.array_equal(a.values.view(np.uint16), b.values.view(np.uint16))
        assert np.array_equal(a.region_source, b.region_source)
    assert any(b.reverse_complement.any() for b in out["cuda"])
    print("same bits")
""")


def test_targets_on_the_simulated_gpu_path_equal_the_cpu(tmp_path):
    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=tests, tmp=str(tmp_path))], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "same bits" in r.stdout, r.stdout + r.stderr

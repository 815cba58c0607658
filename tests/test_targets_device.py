"""Strand pairs, value transforms and a region mixture on the GPU path: the same bits as the CPU.

`cuda_sim`: in numba's CUDA simulator (NumPy stands in for CuPy; `make test` runs it in its own
process with NUMBA_ENABLE_CUDASIM=1). `gpu`: on a real GPU with CuPy (the values are CuPy arrays
there, transformed by the steps' xp reference on the device; bfloat16 as uint16 bit patterns).
"""
import numpy as np
import pytest

import stream_data
from bwloader_core.config import LoaderConfig
from bwloader_core.device import cuda_simulated, cuda_unavailable_reason

_why = "simulated" if cuda_simulated() else cuda_unavailable_reason()


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a


def _compare(tmp_path, dtype):
    d = stream_data.write_stream_data(tmp_path, seed=3)
    kw = dict(bigwig_paths=d.bigwig_paths, sequence_length=200, window_size=10, reduce="sum", batch_size=4,
              batches_per_epoch=2, reverse_complement=True, strand_pairs=[["track0", "track1"]],
              value_transforms=[{"step": "power", "exponent": 0.75, "threshold": -1},
                                {"step": "soft_clip", "threshold": 2}, "log1p"],
              regions={"a": {"regions": [["chr1", 0, 50000]]}, "b": "all"}, dtype=dtype, num_workers=1, seed=5)
    out = {}
    for backend in ("cpu", "cuda"):
        with LoaderConfig(backend=backend, **kw).build() as ds:
            out[backend] = list(ds)
    assert len(out["cpu"]) == len(out["cuda"]) == 2
    bits = np.uint16 if dtype != "float32" else np.uint32
    for a, b in zip(out["cpu"], out["cuda"]):
        np.testing.assert_array_equal(np.ascontiguousarray(_host(b.values)).view(bits), a.values.view(bits))
        np.testing.assert_array_equal(a.region_source, b.region_source)
        np.testing.assert_array_equal(a.strand_partners, b.strand_partners)
    assert any(b.reverse_complement.any() for b in out["cuda"])


@pytest.mark.cuda_sim
@pytest.mark.skipif(not cuda_simulated(), reason="needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported "
                                                 "(make test runs it)")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_targets_on_the_simulated_gpu_path_equal_the_cpu(tmp_path, dtype):
    _compare(tmp_path, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(_why is not None, reason=f"no usable GPU: {_why}")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_targets_on_the_gpu_equal_the_cpu(tmp_path, dtype):
    _compare(tmp_path, dtype)

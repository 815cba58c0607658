"""The GPU path on a real GPU (CuPy, numba-cuda, nvCOMP when installed): parity with the CPU on
every fixture, buffer reuse across batches, DLPack to PyTorch, and corrupt blocks.

Marked `gpu`: skipped without a usable CUDA GPU (and under the simulator, which test_cuda_sim.py
covers). `make gpu-check` (benchmarks/gpu_check.sh) runs them on a lent machine.
"""
import shutil

import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection, BigWigFormatError
from bwloader_core.device import Device, cuda_simulated, cuda_unavailable_reason

_why = "simulated (see test_cuda_sim.py)" if cuda_simulated() else cuda_unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_why is not None, reason=f"no usable GPU: {_why}")]

CASES = [(1, "mean", 0.0), (1, "mean", np.nan), (7, "mean", -1.0), (128, "mean", np.nan), (10, "max", np.nan),
         (5, "min", 0.0), (3, "sum", np.nan)]


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a


def _inflaters():
    from bwloader_core.device import nvcomp_unavailable_reason
    return ["cpu"] + ([] if nvcomp_unavailable_reason() else ["nvcomp"])


@pytest.mark.parametrize("inflater", ["nvcomp", "cpu"])
@pytest.mark.parametrize("name", df.FIXTURE_NAMES)
def test_every_fixture_equals_cpu(bw_files, name, inflater):
    if inflater not in _inflaters():
        pytest.skip("nvCOMP is not installed")
    f = bw_files[name]
    with BigWigCollection([f.path], scaling=[1.25]) as cpu, \
            BigWigCollection([f.path], scaling=[1.25], backend=Device.cuda(inflater=inflater)) as gpu:
        import cupy
        rng = np.random.default_rng(23)
        for window, reduce, default in CASES:
            chroms, starts, ends = df.random_queries(f, rng, 40 * window, 64)
            a = cpu.get_batch(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default)
            b = gpu.get_batch(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default)
            assert isinstance(b, cupy.ndarray)
            np.testing.assert_array_equal(a.view(np.uint32), _host(b).view(np.uint32),
                                          err_msg=f"{name} {inflater} window={window} {reduce} default={default}")
        for dtype in ("float16", "bfloat16"):
            chroms, starts, ends = df.random_queries(f, rng, 300, 32)
            a = cpu.get_batch(chroms, starts, ends, window_size=3, dtype=dtype)
            b = _host(gpu.get_batch(chroms, starts, ends, window_size=3, dtype=dtype))
            np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))
        assert gpu._processor._cuda.blocks_on_cpu == 0           # nothing was handed back to the CPU


def test_buffers_reused_and_batches_never_overwritten(bw_files):
    f = bw_files["pybigwig_mixed"]
    with BigWigCollection([f.path] * 4, track_names=list("abcd"), backend="cuda") as gpu, \
            BigWigCollection([f.path] * 4, track_names=list("abcd")) as cpu:
        rng = np.random.default_rng(5)
        kept, want, staging = [], [], set()
        for i in range(12):
            length = int(rng.choice([100, 1000, 5000]))
            chroms, starts, ends = df.random_queries(f, rng, length, int(rng.integers(1, 300)))
            kept.append(gpu.get_batch(chroms, starts, ends, window_size=1 + i % 3))
            want.append(cpu.get_batch(chroms, starts, ends, window_size=1 + i % 3))
            staging.add(id(gpu._processor._cuda._dev_bufs.get("stage")))
        assert gpu._processor._cuda.stream is not None
        assert len(staging) <= 4                  # grown a few times, then reused
        for a, b in zip(want, kept):             # earlier outputs intact after later batches
            np.testing.assert_array_equal(a, _host(b))


def test_torch_gets_cuda_tensors_zero_copy(bw_files):
    torch = pytest.importorskip("torch")
    from bwloader_core import LoaderConfig
    from bwloader_core.torch import TorchBigWigDataset
    f = bw_files["pybigwig_bedgraph"]
    cfg = LoaderConfig(bigwig_paths=[f.path, f.path], track_names=["a", "b"], backend="cuda", sequence_length=500,
                       batch_size=8, batches_per_epoch=3, dtype="bfloat16", regions=[["chr1", 0, 400_000]])
    ds = TorchBigWigDataset.from_config(cfg)
    try:
        batches = list(torch.utils.data.DataLoader(ds, batch_size=None))
    finally:
        ds.close()
    assert len(batches) == 3
    for b in batches:
        v = b["values"]
        assert v.is_cuda and v.dtype == torch.bfloat16 and tuple(v.shape) == (8, 500, 2)


def test_dlpack_shares_memory(bw_files):
    torch = pytest.importorskip("torch")
    from bwloader_core.torch import to_tensor
    f = bw_files["pybigwig_bedgraph"]
    with BigWigCollection([f.path], backend="cuda") as gpu:
        v = gpu.get_batch(["chr1"] * 4, [0, 10, 20, 30], [100, 110, 120, 130])
        t = to_tensor(v, "float32")
        assert t.is_cuda and t.data_ptr() == v.data.ptr


def test_corrupt_block_on_the_gpu(bw_files, tmp_path):
    f = bw_files["pybigwig_bedgraph"]
    bad = tmp_path / "bad.bw"
    shutil.copy(f.path, bad)
    from bwloader_core import BigWigFile
    with BigWigFile(str(bad)) as bwf:
        off, size = int(bwf.block_offset[0]), int(bwf.block_size[0])
        chrom, first = bwf.chrom_names[0], int(bwf.block_start_key[0])
    with open(bad, "r+b") as fh:
        fh.seek(off + size // 2)
        fh.write(bytes(32))
    with BigWigCollection([str(bad)], backend="cuda") as gpu:
        with pytest.raises(BigWigFormatError, match=r"bad\.bw"):
            gpu.get_batch([chrom], [first], [first + 5000])

"""Every CUDA kernel compiles to PTX for real GPUs (sm_80, sm_90) with no GPU and no driver.

numba-cuda finds libNVVM in the nvidia-cuda-nvcc wheel (`pip install "numba-cuda[cu12]"`). Kernels
that call device functions ask for the current device's compute capability; offline it is
answered by patching numba's lookup. Runs without the simulator (`make test`: its own process).
"""
from types import SimpleNamespace

import numpy as np
import pytest

from bwloader_core.device import cuda_simulated

pytestmark = [pytest.mark.cuda_compile,
              pytest.mark.skipif(cuda_simulated(), reason="cannot compile with the simulator on")]

cuda = pytest.importorskip("numba.cuda")
from numba import types  # noqa: E402

i64, u32, u8, f32, f64, b1, i32 = (types.int64[::1], types.uint32[::1], types.uint8[::1], types.float32[::1],
                                   types.float64[::1], types.boolean[::1], types.int32[::1])
sections = types.int64[:, ::1]
out3 = types.float32[:, :, ::1]


def _kernels():
    from bwloader_core.stages import fetch_cuda, fill, parse, search
    count, write = parse.cuda_kernels()
    fill_value, paint, window_accumulate, finish = fill.cuda_kernels()
    adler, swap = fetch_cuda.cuda_kernels()
    return {
        "parse.count_sections": (count, (u32, i64, i64, b1, i64, i64, i64)),
        "parse.write_sections": (write, (u32, i64, i64, b1, i64, i64, sections)),
        "search.search_entries": (search.cuda_kernels(), (u32, sections, i64, i64, i64, i64, i64, i64, i64,
                                                          i64, i64, i64, i64, i64)),
        "fill.fill_value": (fill_value, (f32, types.float32)),
        "fill.paint": (paint, (u32, f32, sections, i64, i64, i64, i64, i64, i64, i64, f64, types.int64, out3)),
        "fill.window_accumulate": (window_accumulate, (u32, f32, sections, i64, i64, i64, i64, i64, i64, i64, f64,
                                                       types.int64, types.int64, types.int64, types.boolean,
                                                       types.boolean, types.boolean, f64, f64, f64, i32)),
        "fill.finish_windows": (finish, (f64, f64, f64, types.int64, types.int64, types.boolean, types.boolean,
                                         types.float64, types.int64, out3)),
        "fetch.adler32": (adler, (u8, i64, i64, b1, u32, u8)),
        "fetch.swap_words": (swap, (u32, i64, i64, b1)),
    }


KERNEL_NAMES = ["parse.count_sections", "parse.write_sections", "search.search_entries", "fill.fill_value",
                "fill.paint", "fill.window_accumulate", "fill.finish_windows", "fetch.adler32", "fetch.swap_words"]


@pytest.fixture(scope="module")
def kernels():
    return _kernels()


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernel_compiles_to_ptx(kernels, name, cc, monkeypatch):
    import numba.cuda.dispatcher as dispatcher
    monkeypatch.setattr(dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=cc),
                        raising=False)
    kernel, sig = kernels[name]
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    target = next(line for line in ptx.splitlines() if line.startswith(".target"))
    assert target.split()[1] == f"sm_{cc[0]}{cc[1]}"
    assert ".entry" in ptx


def test_window_sums_are_not_fused(kernels, monkeypatch):
    """x * y + z would compile to one fused multiply-add and round differently from the CPU; the
    window kernels use non-fused multiplies and adds (mul.rn / add.rn), never fma, on doubles."""
    import numba.cuda.dispatcher as dispatcher
    monkeypatch.setattr(dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=(9, 0)),
                        raising=False)
    for name in ("fill.window_accumulate", "fill.finish_windows", "fill.paint"):
        kernel, sig = kernels[name]
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        assert "fma.rn.f64" not in ptx, name
    ptx, _ = cuda.compile_ptx(kernels["fill.window_accumulate"][0].py_func, kernels["fill.window_accumulate"][1],
                              cc=(9, 0))
    assert "mul.rn.f64" in ptx and "add.rn.f64" in ptx


def test_kernel_list_is_complete(kernels):
    """A kernel added to a stage must be added here too (so it is compiled in CI)."""
    from bwloader_core.stages import fetch_cuda, fill, parse, search
    n = len(parse.cuda_kernels()) + len(fill.cuda_kernels()) + len(fetch_cuda.cuda_kernels()) + 1
    assert n == len(KERNEL_NAMES) == len(kernels)
    assert np.all([callable(k) for k, _ in kernels.values()])

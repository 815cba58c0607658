"""The GPU path's logic in numba's CUDA simulator: backend='cuda' equals the CPU backend bit for bit.

Run in their own process with NUMBA_ENABLE_CUDASIM=1 set before numba is imported (`make test`
does: `NUMBA_ENABLE_CUDASIM=1 pytest -m cuda_sim`); skipped otherwise. NumPy arrays stand in for
CuPy ones, and libdeflate's raw Deflate stands in for nvCOMP on the staged (nvCOMP) path. Inputs
stay tiny: each simulated CUDA thread is an OS thread.
"""
import shutil
import threading
import zlib

import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection, BigWigFormatError
from bwloader_core.device import Device, cuda_simulated

pytestmark = [pytest.mark.cuda_sim,
              pytest.mark.skipif(not cuda_simulated(), reason="needs NUMBA_ENABLE_CUDASIM=1 set before numba "
                                                                 "is imported (make test runs it)")]

INFLATERS = ["nvcomp", "cpu"]     # staged payloads + libdeflate standing in for nvCOMP; CPU inflate + upload
CASES = [(1, "mean", 0.0), (1, "mean", np.nan), (7, "mean", -1.0), (10, "max", np.nan), (5, "min", 0.0),
         (3, "sum", np.nan), (13, "mean", np.nan)]


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


def _pair(paths, inflater, **kw):
    return (BigWigCollection(paths, **kw),
            BigWigCollection(paths, backend=Device.cuda(inflater=inflater), **kw))


@pytest.mark.parametrize("inflater", INFLATERS)
@pytest.mark.parametrize("name", df.FIXTURE_NAMES)
def test_every_fixture_equals_cpu(bw_files, name, inflater):
    """Every section type, big-endian, uncompressed, many chromosomes, deep trees, version 1 and
    pyBigWig's own test.bw: every reduce x default equals the CPU backend bit for bit."""
    f = bw_files[name]
    cpu, gpu = _pair([f.path], inflater)
    with cpu, gpu:
        assert gpu.device.kind == "cuda" and gpu.device.simulated
        rng = np.random.default_rng(17)
        for window, reduce, default in CASES:
            chroms, starts, ends = df.random_queries(f, rng, 26 * window, 5)
            a = cpu.get_batch(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default)
            b = gpu.get_batch(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default)
            assert isinstance(b, np.ndarray) and b.shape == a.shape and b.dtype == a.dtype
            assert np.array_equal(_bits(a), _bits(b)), f"{name} window={window} {reduce} default={default}"
        chroms, starts, ends = df.random_queries(f, rng, 60, 4)      # and equals pyBigWig itself
        want = df.oracle_batch(f, chroms, starts, ends).astype(np.float32)
        got = gpu.get_batch(chroms, starts, ends, default_value=np.nan)[..., 0]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtypes_and_scaling_equal_cpu(bw_files, dtype):
    files = [bw_files["pybigwig_mixed"], bw_files["bigendian"], bw_files["uncompressed"]]
    paths = [f.path for f in files]
    cpu, gpu = _pair(paths, "nvcomp", track_names=["a", "b", "c"], scaling=[0.1, 3.0, 1.7])
    with cpu, gpu:
        rng = np.random.default_rng(3)
        for window, reduce, default in [(1, "mean", 0.0), (9, "mean", np.nan), (4, "sum", -0.3), (6, "max", 0.0)]:
            chroms, starts, ends = df.random_queries(files, rng, 24 * window, 4, chrom_pool=["chr1", "chr2"])
            a = cpu.get_batch(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default,
                              dtype=dtype)
            b = gpu.get_batch(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default,
                              dtype=dtype)
            assert b.dtype == a.dtype
            assert np.array_equal(_bits(a), _bits(b)), f"{dtype} window={window} {reduce}"


def test_overlapping_records_take_the_reference_path(tmp_path):
    """fixedStep with span > step: records overlap; the window kernel hands the batch to the CPU
    reference, which paints later records over earlier ones, as pyBigWig does."""
    import pyBigWig
    p = str(tmp_path / "overlap.bw")
    bw = pyBigWig.open(p, "w")
    bw.addHeader([("chr1", 5000)], maxZooms=0)
    bw.addEntries("chr1", 100, values=np.random.default_rng(2).random(400).round(3).tolist(), span=10, step=4)
    bw.close()
    cpu, gpu = _pair([p], "nvcomp")
    with cpu, gpu:
        starts = np.array([0, 90, 700, 1500])
        for window in (1, 20):
            a = cpu.get_batch("chr1", starts, starts + 200, window_size=window, default_value=np.nan)
            b = gpu.get_batch("chr1", starts, starts + 200, window_size=window, default_value=np.nan)
            assert np.array_equal(_bits(a), _bits(b))


def _flip_deflate_byte(src, dst):
    shutil.copy(src, dst)
    from bwloader_core import BigWigFile
    with BigWigFile(dst) as f:
        off, size = int(f.block_offset[0]), int(f.block_size[0])
        chrom = f.chrom_names[0]
    with open(dst, "r+b") as fh:
        fh.seek(off + size // 2)
        b = fh.read(1)
        fh.seek(off + size // 2)
        fh.write(bytes([b[0] ^ 0x5A]))
    return chrom, off


@pytest.mark.parametrize("inflater", INFLATERS)
def test_corrupt_block_is_a_format_error_naming_file_and_offset(bw_files, tmp_path, inflater):
    """A flipped byte in a Deflate stream: the GPU checks (inflate status, Adler-32) hand the
    block to the CPU fetcher, which names the file and the block's offset; no numbers come out."""
    f = bw_files["pybigwig_bedgraph"]
    bad = tmp_path / "bad.bw"
    chrom, off = _flip_deflate_byte(f.path, bad)
    with BigWigCollection([str(bad)], backend=Device.cuda(inflater=inflater)) as gpu:
        with pytest.raises(BigWigFormatError, match=rf"bad\.bw.*(offset {off}|inflate|corrupt)"):
            gpu.get_batch([chrom], [0], [f.chrom_sizes[chrom]])


def test_section_claiming_more_items_than_its_slot(bw_files, tmp_path):
    """An (uncompressed) block whose section header claims 65535 items: the parse kernel flags it,
    and the CPU walk raises the precise error naming the file and the block."""
    f = bw_files["uncompressed"]
    bad = tmp_path / "forged.bw"
    shutil.copy(f.path, bad)
    from bwloader_core import BigWigFile
    with BigWigFile(str(bad)) as bwf:
        off = int(bwf.block_offset[0])
        chrom = bwf.chrom_names[0]
        bo = bwf.byteorder
    with open(bad, "r+b") as fh:
        fh.seek(off + 22)
        fh.write((0xFFFF).to_bytes(2, "little" if bo == "<" else "big"))
    with BigWigCollection([str(bad)], backend="cuda") as gpu:
        with pytest.raises(BigWigFormatError, match=rf"forged\.bw: data block at offset {off}: section claims"):
            gpu.get_batch([chrom], [0], [2000])


def test_zlib_header_and_adler_checks_match_the_cpu(bw_files, tmp_path):
    """A block whose Deflate payload is intact but whose zlib header or Adler-32 trailer is not:
    the CPU inflating whole blocks refuses it, and so does the GPU path, which always inflates
    whole blocks. (The CPU's partial inflate stops before the trailer: it reads the intact items.)"""
    f = bw_files["pybigwig_varstep"]
    from bwloader_core import BigWigFile
    with BigWigFile(f.path) as bwf:
        off, size = int(bwf.block_offset[0]), int(bwf.block_size[0])
        chrom = bwf.chrom_names[0]
        first = int(bwf.block_start_key[0])           # chromosome 0: key = position
    for where, name in ((off, "hdr.bw"), (off + size - 1, "adler.bw")):
        bad = tmp_path / name
        shutil.copy(f.path, bad)
        with open(bad, "r+b") as fh:
            fh.seek(where)
            b = fh.read(1)
            fh.seek(where)
            fh.write(bytes([b[0] ^ 0x01]))
        with BigWigCollection([str(bad)], backend=Device.cpu(partial_inflate=False)) as cpu, \
                BigWigCollection([str(bad)], backend="cuda") as gpu:
            with pytest.raises(BigWigFormatError):
                cpu.get_batch([chrom], [first], [first + 3000])
            with pytest.raises(BigWigFormatError, match=name.replace(".", r"\.")):
                gpu.get_batch([chrom], [first], [first + 3000])


def test_adler32_kernel_equals_zlib():
    from bwloader_core.stages.fetch_cuda import cuda_kernels
    adler, _ = cuda_kernels()
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 256, n, dtype=np.uint8) for n in (0, 1, 5551, 5552, 5553, 12000)]
    data = np.concatenate(blocks)
    slot = np.concatenate([[0], np.cumsum([len(b) for b in blocks])[:-1]]).astype(np.int64)
    n = np.array([len(b) for b in blocks], np.int64)
    expected = np.array([zlib.adler32(b.tobytes()) for b in blocks], np.uint32)
    expected[2] ^= 1
    status = np.zeros(len(blocks), np.uint8)
    adler[1, 3](data, slot, n, np.ones(len(blocks), bool), expected, status)
    assert status.tolist() == [0, 0, 1, 0, 0, 0]


def test_auto_and_config_pick_cuda_and_stream_in_order(bw_files):
    """backend='auto' picks the (simulated) GPU; a LoaderConfig with backend='cuda' streams batches in
    query order, equal to the CPU config's, with errors from a worker reaching the consumer."""
    from bwloader_core import LoaderConfig
    f = bw_files["pybigwig_mixed"]
    with BigWigCollection([f.path], backend="auto") as c:
        assert c.device.kind == "cuda"
    kw = dict(bigwig_paths=[f.path, bw_files["bigendian"].path], sequence_length=120, window_size=4, batch_size=3,
              batches_per_epoch=4, num_workers=2, seed=5, reverse_complement=True, regions=[["chr1", 0, 90_000]])
    got, want = [], []
    for backend, sink in (("cuda", got), ("cpu", want)):
        ds = LoaderConfig(backend=backend, **kw).build()
        try:
            for batch in ds:
                sink.append(batch)
        finally:
            ds.close()
    assert [b.index for b in got] == list(range(4)) == [b.index for b in want]
    for a, b in zip(want, got):
        assert b.device.startswith("cuda")
        np.testing.assert_array_equal(a.starts, b.starts)
        assert np.array_equal(_bits(a.values), _bits(b.values))
    assert not [t for t in threading.enumerate() if t.name.startswith("bwloader")]


def test_worker_error_reaches_the_consumer(bw_files, tmp_path):
    from bwloader_core.sampling import QueryBatchGenerator
    from bwloader_core.streamed import StreamedDataloader
    f = bw_files["pybigwig_bedgraph"]
    bad = tmp_path / "bad.bw"
    _flip_deflate_byte(f.path, bad)
    with BigWigCollection([str(bad)], backend="cuda") as coll:
        gen = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=2000, batch_size=4,
                                  batches_per_epoch=40, seed=1, regions=[(coll.files[0].chrom_names[0], 0, 60_000)])
        with pytest.raises(BigWigFormatError, match=r"bad\.bw"):
            with StreamedDataloader(gen, coll, num_workers=2) as loader:
                for _ in loader:
                    pass
    assert not [t for t in threading.enumerate() if t.name.startswith("bwloader")]

"""TorchBigWigDataset with torch.utils.data.DataLoader(batch_size=None)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stream_data  # noqa: E402

from bwloader_core.config import LoaderConfig  # noqa: E402
from bwloader_core.torch import TorchBigWigDataset, batch_to_dict, to_tensor  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
N_BATCHES = 6


@pytest.fixture(scope="session")
def tdata(tmp_path_factory):
    return stream_data.write_stream_data(tmp_path_factory.mktemp("torch_stream"), seed=23)


def make_config(tdata, **kw) -> LoaderConfig:
    base = dict(bigwig_paths=list(tdata.bigwig_paths), reference_genome=tdata.fasta, sequence_length=400,
                center_bin_to_predict=200, window_size=4, batch_size=6, batches_per_epoch=N_BATCHES,
                seed=3, jitter=10, reverse_complement=True, default_value=-1.0, num_workers=2,
                queue_size=2, threads_per_worker=1)
    base.update(kw)
    return LoaderConfig(**base)


def loader(ds, **kw):
    return DataLoader(ds, batch_size=None, **kw)


def epoch_of(ds, epoch, **kw):
    ds.set_epoch(epoch)
    return list(loader(ds, **kw))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_dtypes_and_shapes(tdata, dtype):
    cfg = make_config(tdata, dtype=dtype)
    ds = TorchBigWigDataset.from_config(cfg)
    try:
        assert len(ds) == N_BATCHES
        items = epoch_of(ds, 0)
    finally:
        ds.close()
    assert len(items) == N_BATCHES
    T = len(tdata.bigwig_paths)
    for i, item in enumerate(items):
        assert item["index"] == i and item["epoch"] == 0
        v, s = item["values"], item["sequences"]
        assert isinstance(v, torch.Tensor) and isinstance(s, torch.Tensor)
        assert v.dtype == TORCH_DTYPES[dtype] and s.dtype == TORCH_DTYPES[dtype]
        assert tuple(v.shape) == (6, 200 // 4, T)
        assert tuple(s.shape) == (6, 400, 4)
        assert v.is_contiguous() and s.is_contiguous()
        assert item["starts"].dtype == torch.int64 and tuple(item["starts"].shape) == (6,)
        assert torch.equal(item["ends"] - item["starts"], torch.full((6,), 400))
        assert torch.equal(item["target_ends"] - item["target_starts"], torch.full((6,), 200))
        assert item["reverse_complement"].dtype == torch.bool
        assert len(item["chromosomes"]) == 6 and all(isinstance(c, str) for c in item["chromosomes"])
        assert tuple(item["track_indices"].tolist()) == tuple(range(T))
        assert torch.isfinite(v.float()).all()
        assert ((s.float().sum(-1) == 0) | (s.float().sum(-1) == 1)).all()


def test_bfloat16_equals_torch_rounding_of_float32(tdata):
    with_default = dict(default_value=float("nan"))  # NaN default: bf16 NaNs must survive too
    ds32 = TorchBigWigDataset.from_config(make_config(tdata, dtype="float32", **with_default))
    ds16 = TorchBigWigDataset.from_config(make_config(tdata, dtype="bfloat16", **with_default))
    try:
        a, b = epoch_of(ds32, 2), epoch_of(ds16, 2)
    finally:
        ds32.close()
        ds16.close()
    saw_nan = False
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["starts"], y["starts"])
        want = torch.tensor(x["values"].numpy()).to(torch.bfloat16)
        assert y["values"].dtype == torch.bfloat16
        torch.testing.assert_close(y["values"], want, rtol=0, atol=0, equal_nan=True)
        saw_nan |= bool(torch.isnan(want.float()).any())
        # sequences are 0/1: exact in every dtype
        assert torch.equal(y["sequences"].float(), x["sequences"])
    assert saw_nan


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_tensors_share_memory_with_the_batch(tdata, dtype):
    cfg = make_config(tdata, dtype=dtype, batches_per_epoch=2)
    with cfg.build() as ds:
        batch = next(iter(ds))
    d = batch_to_dict(batch)
    for key, arr in (("values", batch.values), ("sequences", batch.sequences), ("starts", batch.starts)):
        t = d[key]
        assert t.untyped_storage().data_ptr() == arr.__array_interface__["data"][0], key
        assert t.data_ptr() == arr.ctypes.data, key
    # mutate through the tensor, see it in the numpy array (and back)
    d["values"][0, 0, 0] = 7.0
    assert float(np.float32(batch.values[0, 0, 0])) == 7.0
    batch.values[1, 2, 0] = 3.0
    assert float(d["values"][1, 2, 0]) == 3.0
    d["sequences"][0, 0, :] = 0
    assert float(np.asarray(batch.sequences[0, 0], np.float32).sum()) == 0.0


def test_to_tensor_bfloat16_bits_are_kept():
    import ml_dtypes
    x = np.array([1.0, -2.5, np.nan, 3.0e38, 1e-40, 0.1], np.float32).astype(ml_dtypes.bfloat16)
    t = to_tensor(x)
    assert t.dtype == torch.bfloat16
    assert t.data_ptr() == x.ctypes.data
    assert np.array_equal(t.view(torch.int16).numpy(), x.view(np.int16))
    torch.testing.assert_close(t, torch.tensor(x.astype(np.float32)).to(torch.bfloat16), rtol=0, atol=0,
                               equal_nan=True)


def test_set_epoch_determinism(tdata):
    ds = TorchBigWigDataset.from_config(make_config(tdata))
    try:
        a = epoch_of(ds, 5)
        b = epoch_of(ds, 5)
        c = epoch_of(ds, 6)
        # without set_epoch, each new iteration moves on to the next epoch (single process)
        ds.set_epoch(5)
        list(loader(ds))
        d = list(loader(ds))
    finally:
        ds.close()
    assert [x["epoch"] for x in a] == [5] * N_BATCHES and [x["epoch"] for x in c] == [6] * N_BATCHES
    assert [x["epoch"] for x in d] == [6] * N_BATCHES
    for x, y, z in zip(a, b, d, strict=True):
        for key in ("values", "sequences", "starts", "target_starts", "reverse_complement", "track_indices"):
            assert torch.equal(x[key], y[key]), key
        assert x["chromosomes"] == y["chromosomes"]
    for x, z in zip(c, d, strict=True):
        assert torch.equal(x["values"], z["values"]) and torch.equal(x["starts"], z["starts"])
    assert not torch.equal(torch.cat([x["starts"] for x in a]), torch.cat([x["starts"] for x in c]))


def test_dataloader_worker_processes_yield_each_batch_once(tdata):
    ds = TorchBigWigDataset.from_config(make_config(tdata, num_workers=1))
    try:
        single = {x["index"]: x for x in epoch_of(ds, 4)}
        ds.set_epoch(4)
        multi = list(loader(ds, num_workers=2, timeout=60))
    finally:
        ds.close()
    indices = sorted(x["index"] for x in multi)
    assert indices == list(range(N_BATCHES)), indices
    assert len(multi) == len(ds) == N_BATCHES
    for x in multi:  # the same batches as in one process
        y = single[x["index"]]
        assert x["epoch"] == 4
        for key in ("values", "sequences", "starts", "ends", "reverse_complement"):
            assert torch.equal(x[key], y[key]), key
        assert x["chromosomes"] == y["chromosomes"]


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_dataloader_worker_processes_with_odd_split(tdata):
    """3 workers over 6 batches and 2 workers over 5: still every batch exactly once."""
    for workers, n in ((3, 6), (2, 5)):
        ds = TorchBigWigDataset.from_config(make_config(tdata, batches_per_epoch=n, reference_genome=None,
                                                        num_workers=1))
        try:
            ds.set_epoch(1)
            got = sorted(x["index"] for x in loader(ds, num_workers=workers, timeout=60))
        finally:
            ds.close()
        assert got == list(range(n)), (workers, n, got)


def test_dataset_pickles_for_spawned_workers(tdata):
    import pickle
    ds = TorchBigWigDataset.from_config(make_config(tdata, batches_per_epoch=2))
    try:
        clone = pickle.loads(pickle.dumps(ds))
        clone.close()
    finally:
        ds.close()


def _epochs(items):
    return sorted({x["epoch"] for x in items})


def _same(xs, ys):
    xs, ys = sorted(xs, key=lambda x: x["index"]), sorted(ys, key=lambda x: x["index"])
    return len(xs) == len(ys) and all(torch.equal(x["values"], y["values"]) and torch.equal(x["starts"], y["starts"])
                                      for x, y in zip(xs, ys))


def test_set_epoch_reaches_persistent_workers(tdata, capfd):
    """The Lightning setup: persistent DataLoader workers. set_epoch in the main process decides
    the epoch: set_epoch(0) twice gives the same batches, set_epoch(3) gives epoch 3, and without
    set_epoch the next pass is the next epoch. No warning."""
    ds = TorchBigWigDataset.from_config(make_config(tdata, num_workers=1, batches_per_epoch=4))
    dl = loader(ds, num_workers=2, persistent_workers=True, timeout=60)
    try:
        ds.set_epoch(0)
        a = list(dl)
        ds.set_epoch(0)
        b = list(dl)
        ds.set_epoch(3)
        c = list(dl)
        d = list(dl)                     # no set_epoch: moves on
        ds.set_epoch(7)
        e = list(dl)
        ds.set_epoch(3)
        ref = list(loader(ds))           # one process, for the content of epoch 3
    finally:
        del dl
        ds.close()
    assert [_epochs(x) for x in (a, b, c, d, e)] == [[0], [0], [3], [4], [7]]
    assert all(sorted(x["index"] for x in items) == [0, 1, 2, 3] for items in (a, b, c, d, e))
    assert _same(a, b) and _same(c, ref) and not _same(a, c)
    assert "set_epoch" not in capfd.readouterr().err


def test_epochs_count_up_with_fresh_workers_without_set_epoch(tdata):
    ds = TorchBigWigDataset.from_config(make_config(tdata, num_workers=1, batches_per_epoch=2, reference_genome=None))
    try:
        dl = loader(ds, num_workers=2, timeout=60)
        first, second = list(dl), list(dl)
        ds.set_epoch(5)
        third = list(dl)
    finally:
        ds.close()
    assert [_epochs(x) for x in (first, second, third)] == [[0], [1], [5]]

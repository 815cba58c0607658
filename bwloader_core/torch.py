"""PyTorch wrapper: an IterableDataset of dicts of tensors, for DataLoader(batch_size=None).

Importing this module needs torch; the rest of bwloader does not.
"""
from __future__ import annotations

import multiprocessing

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .dataset import BigWigDataset


def to_tensor(arr, dtype: str | None = None) -> torch.Tensor:
    """NumPy (CPU) or CuPy (GPU, through DLPack) -> torch without a copy; bfloat16 (ml_dtypes on
    the CPU, uint16 bit patterns on the GPU when `dtype` says bfloat16) is reinterpreted bit for bit."""
    if not isinstance(arr, np.ndarray):                 # a device array: zero-copy through DLPack
        t = torch.from_dlpack(arr)
        if dtype == "bfloat16" and t.dtype in (torch.uint16, torch.int16):
            t = t.view(torch.bfloat16)
        return t
    if arr.dtype.name == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(arr).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(arr))


def batch_to_dict(batch) -> dict:
    out = {
        "values": to_tensor(batch.values, batch.dtype),
        "chromosomes": batch.chromosomes.tolist(),
        "starts": to_tensor(batch.starts),
        "ends": to_tensor(batch.ends),
        "target_starts": to_tensor(batch.target_starts),
        "target_ends": to_tensor(batch.target_ends),
        "track_indices": to_tensor(batch.track_indices),
        "reverse_complement": to_tensor(batch.reverse_complement),
        "epoch": batch.epoch,
        "index": batch.index,
    }
    if batch.sequences is not None:
        out["sequences"] = to_tensor(batch.sequences, batch.sequence_dtype)
    if batch.strand_partners is not None:
        out["strand_partners"] = to_tensor(batch.strand_partners)
    if batch.region_source is not None:
        out["region_source"] = to_tensor(batch.region_source)
        out["region_source_names"] = list(batch.region_source_names)
    return out


class EpochClock:
    """Which epoch a DataLoader worker process iterates, decided by `set_epoch` in the main process.

    Worker processes hold copies of the dataset (persistent ones for the whole run), so an epoch
    number set in the main process never reaches them by itself. The clock lives in shared memory:
    `set_epoch(n)` records n and how many worker iterations had started by then; each worker, when
    the DataLoader (re)starts it for an epoch, counts itself in and takes
    n + (iterations started since) // num_workers. Every worker of one epoch gets the same number,
    with or without persistent workers; without set_epoch the epochs count up from 0.
    """

    def __init__(self):
        self._shared = multiprocessing.Array("q", [-1, 0, 0])   # epoch set (-1: none), started at set, started

    def set_epoch(self, epoch: int):
        with self._shared.get_lock():
            self._shared[0] = int(epoch)
            self._shared[1] = self._shared[2]

    def next_epoch(self, num_workers: int) -> int:
        """Called once by each worker process as it starts iterating an epoch."""
        with self._shared.get_lock():
            epoch, at_set, started = self._shared[0], self._shared[1], self._shared[2]
            self._shared[2] = started + 1
        return max(epoch, 0) + (started - at_set) // max(int(num_workers), 1)

    def __getstate__(self):
        # shared memory travels only to processes being started (DataLoader workers); any other copy
        # (pickle, deepcopy) gets a clock of its own
        from multiprocessing.context import get_spawning_popen
        return {"shared": self._shared if get_spawning_popen() is not None else None,
                "epoch": self._shared[0]}

    def __setstate__(self, state):
        if state["shared"] is not None:
            self._shared = state["shared"]
        else:
            self.__init__()
            if state["epoch"] >= 0:
                self.set_epoch(state["epoch"])


class TorchBigWigDataset(IterableDataset):
    """Yields one dict per batch: values (batch, length // window, tracks), sequences
    (batch, sequence_length, 4) when a genome is set, and the query coordinates.

    Use `DataLoader(ds, batch_size=None)`: batching and prefetching happen inside (threads).
    With DataLoader workers (processes), each worker reads every n-th query batch, so no batch
    is produced twice. `set_epoch(n)` in the main process decides the epoch of the next pass, with
    or without worker processes, persistent or not (an `EpochClock` in shared memory); without it
    each pass moves on to the next epoch.
    """

    def __init__(self, dataset: BigWigDataset):
        super().__init__()
        self.dataset = dataset
        self.clock = EpochClock()

    @classmethod
    def from_config(cls, config, rank=None, world_size=None):
        from .config import LoaderConfig
        cfg = config if isinstance(config, LoaderConfig) else LoaderConfig.from_yaml(config)
        return cls(cfg.build(rank=rank, world_size=world_size))

    def set_epoch(self, epoch: int):
        """The epoch of the next pass over the DataLoader (call it before each epoch; the same
        number gives the same batches, e.g. set_epoch(0) before every validation pass)."""
        self.dataset.set_epoch(epoch)
        self.clock.set_epoch(epoch)

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        info = get_worker_info()
        if info is not None:
            self.dataset.worker_shard = (info.id, info.num_workers)
            self.dataset.set_epoch(self.clock.next_epoch(info.num_workers))
        for batch in self.dataset:
            yield batch_to_dict(batch)

    def close(self):
        self.dataset.close()

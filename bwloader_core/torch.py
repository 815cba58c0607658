"""PyTorch wrapper: an IterableDataset of dicts of tensors, for DataLoader(batch_size=None).

Importing this module needs torch; the rest of bwloader does not.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .dataset import BigWigDataset

_warned = {"epoch": False}


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


class TorchBigWigDataset(IterableDataset):
    """Yields one dict per batch: values (batch, length // window, tracks), sequences
    (batch, sequence_length, 4) when a genome is set, and the query coordinates.

    Use `DataLoader(ds, batch_size=None)`: batching and prefetching happen inside (threads).
    With DataLoader workers (processes), each worker reads every n-th query batch, so no batch
    is produced twice.
    """

    def __init__(self, dataset: BigWigDataset):
        super().__init__()
        self.dataset = dataset

    @classmethod
    def from_config(cls, config, rank=None, world_size=None):
        from .config import LoaderConfig
        cfg = config if isinstance(config, LoaderConfig) else LoaderConfig.from_yaml(config)
        return cls(cfg.build(rank=rank, world_size=world_size))

    def set_epoch(self, epoch: int):
        self.dataset.set_epoch(epoch)

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        info = get_worker_info()
        if info is not None:
            self.dataset.worker_shard = (info.id, info.num_workers)
            if self.dataset.epoch is None and not _warned["epoch"]:
                _warned["epoch"] = True
                warnings.warn("TorchBigWigDataset in DataLoader worker processes: call ds.set_epoch(n) before "
                              "each epoch, otherwise every epoch repeats the same batches (the workers' copies "
                              "cannot advance the epoch)", RuntimeWarning, stacklevel=2)
        for batch in self.dataset:
            yield batch_to_dict(batch)

    def close(self):
        self.dataset.close()

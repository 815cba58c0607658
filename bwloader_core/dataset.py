"""BigWigDataset: the framework-agnostic iterable that training loops over (one epoch per iter)."""
from __future__ import annotations

from .streamed import StreamedDataloader


class BigWigDataset:
    """Batches of one epoch per `iter()`, streamed by a StreamedDataloader.

    `set_epoch(n)` chooses the epoch (the same seed and epoch give the same batches); without it,
    each new `iter()` moves on to the next epoch.
    """

    def __init__(self, collection, generator, *, num_workers=2, queue_size=4, window_size=1,
                 reduce="mean", default_value=0.0, dtype="float32", genome=None,
                 threads_per_worker=None, sequence_dtype=None, value_transforms=None, owns_collection=False):
        self.collection = collection
        self.generator = generator
        self.loader_kwargs = dict(num_workers=num_workers, queue_size=queue_size, window_size=window_size,
                                  reduce=reduce, default_value=default_value, dtype=dtype, genome=genome,
                                  threads_per_worker=threads_per_worker, sequence_dtype=sequence_dtype,
                                  value_transforms=value_transforms)
        self.epoch = None
        self._next_epoch = 0
        self._owns_collection = owns_collection
        self._loader = None
        self.worker_shard = None  # (id, count): keep every count-th query batch (DataLoader workers)

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.generator)

    def loader(self, epoch: int, start: int = 0, stop: int | None = None) -> StreamedDataloader:
        """A StreamedDataloader over batches `start`..`stop` (default: to the end) of `epoch`:
        resume an epoch part-way (a dashboard's Pause/Start, a restart from a checkpoint) with
        exactly the batches a full iteration would give there. Iterate it once; close it (or use
        `with`) to stop early. Does not change `set_epoch` or the epoch count."""
        n = len(self.generator)
        start = int(start)
        stop = n if stop is None else min(int(stop), n)
        if not 0 <= start <= n:
            raise IndexError(f"start batch {start} out of range for {n} batches per epoch")
        epoch = int(epoch)
        if start == 0 and stop == n:
            self.generator.set_epoch(epoch)
            source = iter(self.generator)
        else:
            source = (self.generator.batch(i, epoch) for i in range(start, stop))
        if self.worker_shard is not None and self.worker_shard[1] > 1:
            wid, k = self.worker_shard
            source = (qb for qb in source if qb.index % k == wid)
        return StreamedDataloader(source, self.collection, **self.loader_kwargs)

    def __iter__(self):
        epoch = self.epoch if self.epoch is not None else self._next_epoch
        self._next_epoch = epoch + 1
        self.epoch = None
        loader = self.loader(epoch)
        self._loader = loader
        try:
            yield from loader
        finally:
            loader.close()
            self._loader = None

    @property
    def track_names(self):
        return list(self.collection.track_names)

    def close(self):
        if self._loader is not None:
            self._loader.close()
        if self._owns_collection:
            self.collection.close()
            genome = self.loader_kwargs.get("genome")
            if genome is not None and hasattr(genome, "close"):
                genome.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

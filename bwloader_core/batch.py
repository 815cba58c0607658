"""Batch: the unit that flows out of the loader."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class Batch:
    """Values and (optionally) one-hot sequences of one query batch, with where they came from.

    `values` is (batch, target_length // window_size, n_tracks) over [target_starts, target_ends);
    `sequences` is (batch, sequence_length, 4) (A, C, G, T) over [starts, ends), or None without a
    reference genome. Samples with `reverse_complement` set have values reversed along length, the
    columns of each strand pair swapped (`strand_partners[j]` is the column paired with column j;
    None without strand pairs) and the sequence reverse-complemented. `value_transforms` have been
    applied. `region_source[i]` indexes `region_source_names`: the mixture source sample i came
    from. The batch owns its arrays: no later batch overwrites them.
    On a GPU `values` and `sequences` are CuPy arrays on the device (`device` says which path made
    them); `dtype` names the element type, as a bfloat16 GPU array holds uint16 bit patterns
    (CuPy has no bfloat16; the PyTorch wrapper views them as torch.bfloat16).
    `timings` holds seconds per stage; `stats` other measurements of the batch: with sequences,
    `unknown_fraction` (the share of N / non-ACGT bases over all its sequences) and
    `all_unknown_samples` (samples whose sequence is N only).
    """

    values: np.ndarray
    chromosomes: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    target_starts: np.ndarray
    target_ends: np.ndarray
    track_indices: np.ndarray
    track_names: tuple
    reverse_complement: np.ndarray
    sequences: np.ndarray | None = None
    epoch: int = 0
    index: int = 0
    timings: dict = field(default_factory=dict)
    dtype: str = "float32"
    sequence_dtype: str = "float32"
    device: str = "cpu"
    strand_partners: np.ndarray | None = None
    region_source: np.ndarray | None = None
    region_source_names: tuple = ()
    stats: dict = field(default_factory=dict)     # e.g. unknown_fraction: share of N in `sequences`

    @property
    def batch_size(self) -> int:
        return int(self.values.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + (self.sequences.nbytes if self.sequences is not None else 0))

    def coordinates(self) -> list[str]:
        """'chrom:start-end(+/-)' of each sample's input window."""
        return [f"{c}:{s}-{e}({'-' if r else '+'})" for c, s, e, r in
                zip(self.chromosomes.tolist(), self.starts.tolist(), self.ends.tolist(),
                    self.reverse_complement.tolist())]

    def source_names(self) -> list[str]:
        """The region source of each sample, by name."""
        if self.region_source is None or not self.region_source_names:
            return []
        return [self.region_source_names[i] for i in self.region_source.tolist()]

    def __repr__(self):
        seq = None if self.sequences is None else tuple(self.sequences.shape)
        return (f"Batch(epoch={self.epoch}, index={self.index}, values={tuple(self.values.shape)} "
                f"{self.values.dtype}, sequences={seq}, tracks={len(self.track_names)})")

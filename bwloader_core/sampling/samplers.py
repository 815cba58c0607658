"""Position and track samplers.

Every sampler is vectorised: one call draws a whole batch with numpy, from a
``numpy.random.Generator`` that the caller derives from (seed, epoch, batch index), so a batch is a
pure function of those numbers.

Window convention: a window of ``sequence_length`` L around centre ``c`` is
``[c - L // 2, c - L // 2 + L)``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized

import numpy as np

from .regions import Regions, _preview

__all__ = [
    "RegionSampler",
    "PositionSource",
    "ArrayPositions",
    "StreamPositions",
    "make_position_source",
    "TrackSampler",
    "AllTracks",
    "RandomTracks",
    "FixedTracks",
    "CustomTracks",
    "make_track_sampler",
    "positions_in_regions",
]

_CONTAIN = ("center", "window")


def _check_int(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def positions_in_regions(regions: Regions, chrom_ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Boolean mask: is base ``positions[i]`` of chromosome ``chrom_ids[i]`` inside ``regions``?"""
    if len(regions) == 0:
        return np.zeros(len(positions), dtype=bool)
    off = regions.global_offsets()
    g_s = off[regions.chrom_ids] + regions.starts
    g_e = off[regions.chrom_ids] + regions.ends
    p = off[chrom_ids] + positions
    i = np.searchsorted(g_s, p, "right") - 1
    inside = i >= 0
    ic = np.maximum(i, 0)
    return inside & (regions.chrom_ids[ic] == chrom_ids) & (p < g_e[ic]) & (positions >= 0)


# ==================================================================================================
# positions
# ==================================================================================================


class RegionSampler:
    """Draws window centres uniformly over the bases of ``regions``.

    Each admissible base is equally likely: a uniform integer over the total admissible length is
    mapped to (interval, offset) with ``np.searchsorted`` over the cumulative lengths, so every
    interval, including the first, the last and a lone one, is reachable and offset 0 is the
    interval's first base.

    Admissible centres are those whose window, shifted by up to ``jitter`` either way, lies inside
    the chromosome (``contain="center"``, default: the centre lies in a region) or inside the region
    itself (``contain="window"``).
    """

    def __init__(self, regions: Regions, sequence_length: int, jitter: int = 0, contain: str = "center"):
        if not isinstance(regions, Regions):
            raise TypeError(f"regions must be a Regions (see load_regions), got {type(regions).__name__}")
        self.sequence_length = _check_int(sequence_length, "sequence_length", 1)
        self.jitter = _check_int(jitter, "jitter", 0)
        if contain not in _CONTAIN:
            raise ValueError(f"contain must be one of {_CONTAIN}, got {contain!r}")
        self.contain = contain
        self.regions = regions
        L, j = self.sequence_length, self.jitter
        left, right = L // 2 + j, (L - L // 2) + j  # centre - left >= lo_bound, centre + right <= hi_bound
        sizes = regions.chrom_lengths[regions.chrom_ids]
        if contain == "center":
            lo = np.maximum(regions.starts, left)
            hi = np.minimum(regions.ends, sizes - right + 1)
        else:
            lo = regions.starts + left
            hi = regions.ends - right + 1
        keep = hi > lo
        self.chrom_ids = regions.chrom_ids[keep]
        self.starts = lo[keep]
        self.ends = hi[keep]
        lengths = self.ends - self.starts
        self.cum_lengths = np.cumsum(lengths)
        self.cum_starts = self.cum_lengths - lengths
        self.total_length = int(self.cum_lengths[-1]) if len(lengths) else 0
        if self.total_length == 0:
            where = "a chromosome" if contain == "center" else "a region"
            raise ValueError(
                f"no window of sequence_length={L} (jitter {j}) fits inside {where} around any base of the "
                f"{len(regions)} region(s) ({regions.total_length:,} bp); use shorter windows or larger regions"
            )

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws: (chromosome ids into ``regions.chrom_names``, centres), both int64."""
        u = rng.integers(0, self.total_length, size=n, dtype=np.int64)
        k = np.searchsorted(self.cum_lengths, u, side="right")
        return self.chrom_ids[k], self.starts[k] + (u - self.cum_starts[k])


class PositionSource:
    """Base of user position sources: (chromosome name, centre) pairs."""

    streaming = False

    def __len__(self) -> int:  # pragma: no cover - interface
        raise TypeError(f"{type(self).__name__} has no length")


def _positions_to_arrays(source) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(source, "columns") and hasattr(source, "shape"):  # DataFrame: never modified
        cols = {str(c).lower(): c for c in source.columns}
        chrom_col = next((cols[c] for c in ("chrom", "chromosome", "chr", "contig") if c in cols), None)
        pos_col = next((cols[c] for c in ("center", "centre", "position", "pos", "summit") if c in cols), None)
        if chrom_col is None or pos_col is None:
            raise ValueError(
                f"a positions DataFrame needs chrom and center (or position) columns; it has {list(source.columns)}"
            )
        chroms = np.asarray(source[chrom_col].to_numpy()).astype(str)
        centres = np.array(source[pos_col].to_numpy(), copy=True)
    else:
        rows = list(source)
        try:
            chroms = np.asarray([str(c) for c, _ in rows], dtype=str)
            centres = np.asarray([p for _, p in rows])
        except (TypeError, ValueError):
            bad = next((r for r in rows if isinstance(r, (str, bytes)) or not hasattr(r, "__len__") or len(r) != 2),
                       None)
            raise ValueError(f"positions: each item must be a (chrom, centre) pair, got {bad!r}") from None
    if centres.dtype.kind == "f":
        if not np.all(np.isfinite(centres)) or np.any(centres != np.round(centres)):
            raise ValueError("positions: centres must be whole numbers")
    elif centres.dtype.kind not in "iu" and centres.size:
        raise ValueError(f"positions: centres must be integers, got dtype {centres.dtype}")
    return chroms, centres.astype(np.int64).reshape(-1)


class _ChromIndex:
    def __init__(self, chrom_sizes: Mapping[str, int]):
        self.names = tuple(chrom_sizes)
        self.sizes = np.asarray([int(chrom_sizes[c]) for c in self.names], dtype=np.int64)
        self._order = np.argsort(np.asarray(self.names, dtype=str), kind="stable")
        self._sorted = np.asarray(self.names, dtype=str)[self._order]

    def ids(self, chroms: np.ndarray, what: str = "positions") -> np.ndarray:
        chroms = np.asarray(chroms).astype(str)
        pos = np.minimum(np.searchsorted(self._sorted, chroms), len(self._sorted) - 1)
        ok = self._sorted[pos] == chroms if len(chroms) else np.zeros(0, dtype=bool)
        if not ok.all():
            missing = list(dict.fromkeys(chroms[~ok].tolist()))
            raise ValueError(
                f"{what}: {len(missing)} chromosome(s) not in the bigWig chromosome list: {_preview(missing)}"
            )
        return self._order[pos].astype(np.int64)


def _check_windows(index: _ChromIndex, ids, centres, sequence_length: int, policy: str, what: str):
    """Windows around ``centres`` must fit inside their chromosome: error, drop or clip."""
    L = sequence_length
    starts = centres - L // 2
    sizes = index.sizes[ids]
    bad = (starts < 0) | (starts + L > sizes)
    if not bad.any():
        return ids, centres
    if policy == "error":
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}: {int(bad.sum())} window(s) of sequence_length={L} do not fit inside their chromosome, "
            f"first: {index.names[ids[i]]}:{centres[i]} (size {sizes[i]}); pass an "
            "ArrayPositions(..., out_of_bounds='drop' or 'clip') to drop or shift them"
        )
    if policy == "drop":
        return ids[~bad], centres[~bad]
    if np.any(sizes < L):
        i = int(np.flatnonzero(sizes < L)[0])
        raise ValueError(f"{what}: chromosome {index.names[ids[i]]} is shorter than sequence_length={L}")
    starts = np.clip(starts, 0, sizes - L)
    return ids, starts + L // 2


class ArrayPositions(PositionSource):
    """A finite set of (chromosome, centre) positions, visited once per epoch.

    Each epoch visits the positions in a permutation drawn from ``(seed, epoch)`` (``shuffle=True``)
    or in the given order; batch ``g`` takes positions ``g * batch_size ...`` (wrapping around).
    ``out_of_bounds``: what to do with a position whose window leaves its chromosome: ``"error"``,
    ``"drop"`` or ``"clip"`` (shift the window inside).
    """

    def __init__(self, chrom_sizes: Mapping[str, int], positions, sequence_length: int, *,
                 shuffle: bool = True, out_of_bounds: str = "error"):
        if out_of_bounds not in ("error", "drop", "clip"):
            raise ValueError(f"out_of_bounds must be 'error', 'drop' or 'clip', got {out_of_bounds!r}")
        self.sequence_length = _check_int(sequence_length, "sequence_length", 1)
        self.shuffle = bool(shuffle)
        self._index = _ChromIndex(chrom_sizes)
        self.chrom_names = self._index.names
        if isinstance(positions, ArrayPositions):
            ids = positions.chrom_ids
            centres = positions.centres
            ids = self._index.ids(np.asarray(positions.chrom_names, dtype=str)[ids]) if len(ids) else ids
        else:
            chroms, centres = _positions_to_arrays(positions)
            ids = self._index.ids(chroms)
        self.chrom_ids, self.centres = _check_windows(self._index, ids, centres, self.sequence_length,
                                                      out_of_bounds, "positions")
        self._perm_lock = threading.Lock()
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.centres.shape[0])

    def __getstate__(self):  # picklable for worker processes (locks are not)
        state = self.__dict__.copy()
        del state["_perm_lock"]
        state["_perm_cache"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._perm_lock = threading.Lock()

    def filtered(self, keep: np.ndarray) -> "ArrayPositions":
        new = object.__new__(ArrayPositions)
        new.__dict__.update(self.__dict__)
        new.chrom_ids, new.centres = self.chrom_ids[keep], self.centres[keep]
        new._perm_lock = threading.Lock()
        new._perm_cache = {}
        return new

    def _order(self, seed: int, epoch: int) -> np.ndarray | None:
        if not self.shuffle:
            return None
        key = (seed, epoch)
        with self._perm_lock:
            perm = self._perm_cache.get(key)
            if perm is None:
                # a stream of its own ([seed, epoch, -1] can not collide with a batch's [seed, epoch, g >= 0])
                perm = np.random.default_rng([seed, epoch, 2**32 - 1]).permutation(len(self))
                self._perm_cache = {key: perm}  # keep only the latest epoch
        return perm

    def take(self, seed: int, epoch: int, global_index: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0:
            raise ValueError("positions: no position left")
        idx = (global_index * n + np.arange(n, dtype=np.int64)) % len(self)
        perm = self._order(seed, epoch)
        if perm is not None:
            idx = perm[idx]
        return self.chrom_ids[idx], self.centres[idx]


class StreamPositions(PositionSource):
    """A one-shot (possibly endless) iterable of (chromosome, centre) pairs, read forward in order.

    Every consumer (thread, rank) reads the whole stream in the same order and keeps its own
    batches, so a deterministic stream gives disjoint shards. It cannot be rewound: random access to
    an earlier batch raises.
    """

    streaming = True

    def __init__(self, chrom_sizes: Mapping[str, int], iterable: Iterable, sequence_length: int):
        self.sequence_length = _check_int(sequence_length, "sequence_length", 1)
        self._index = _ChromIndex(chrom_sizes)
        self.chrom_names = self._index.names
        self._it: Iterator = iter(iterable)
        self._lock = threading.Lock()
        self.exhausted = False

    def read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` next positions (fewer only when the stream ends)."""
        with self._lock:
            rows = []
            for row in self._it:
                rows.append(row)
                if len(rows) == n:
                    break
            else:
                self.exhausted = True
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        chroms, centres = _positions_to_arrays(rows)
        ids = self._index.ids(chroms)
        return _check_windows(self._index, ids, centres, self.sequence_length, "error", "positions")


def make_position_source(positions, chrom_sizes: Mapping[str, int], sequence_length: int,
                         streaming: bool = False) -> PositionSource:
    """``positions`` -> a PositionSource. Sized sources (lists, arrays, DataFrames) and, unless
    ``streaming``, other finite iterables become :class:`ArrayPositions`; with ``streaming`` a
    non-sized iterable becomes :class:`StreamPositions`."""
    if isinstance(positions, PositionSource):
        return positions
    if isinstance(positions, (str, bytes)):
        raise TypeError("positions must be an iterable of (chrom, centre) pairs, not a string")
    if not isinstance(positions, Iterable):
        raise TypeError(f"positions must be an iterable of (chrom, centre) pairs, got {type(positions).__name__}")
    if streaming and not isinstance(positions, Sized):
        return StreamPositions(chrom_sizes, positions, sequence_length)
    return ArrayPositions(chrom_sizes, positions, sequence_length)


# ==================================================================================================
# tracks
# ==================================================================================================


class TrackSampler:
    """Chooses the tracks of one batch: ``sampler(rng, stream_index) -> int64 track indices``.

    ``stream_index`` counts global batches over the life of the generator
    (``epoch * batches_per_epoch + global batch index``).
    """

    n_per_batch: int | None = None  # None: varies per batch

    def __init__(self, track_names: Sequence[str]):
        self.track_names = list(track_names)
        if not self.track_names:
            raise ValueError("track_names is empty")
        self._lookup = {name: i for i, name in enumerate(self.track_names)}

    @property
    def n_tracks(self) -> int:
        return len(self.track_names)

    def resolve(self, selection, what: str = "tracks") -> np.ndarray:
        """Names and/or indices -> validated int64 indices."""
        if isinstance(selection, (str, int, np.integer)):
            selection = [selection]
        out, unknown = [], []
        for item in selection:
            if isinstance(item, (str, np.str_)):
                if item in self._lookup:
                    out.append(self._lookup[item])
                else:
                    unknown.append(item)
            elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if not -self.n_tracks <= int(item) < self.n_tracks:
                    raise ValueError(f"{what}: track index {int(item)} out of range for {self.n_tracks} tracks")
                out.append(int(item) % self.n_tracks)
            else:
                raise TypeError(f"{what}: a track is a name or an index, got {item!r}")
        if unknown:
            raise ValueError(
                f"{what}: {len(unknown)} unknown track name(s): {_preview(unknown)} "
                f"(tracks: {_preview(self.track_names)})"
            )
        if not out:
            raise ValueError(f"{what}: empty track selection")
        return np.asarray(out, dtype=np.int64)

    def __call__(self, rng: np.random.Generator, stream_index: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class AllTracks(TrackSampler):
    """Every track, in order."""

    def __init__(self, track_names):
        super().__init__(track_names)
        self._all = np.arange(self.n_tracks, dtype=np.int64)
        self._all.setflags(write=False)
        self.n_per_batch = self.n_tracks

    def __call__(self, rng, stream_index):
        return self._all.copy()


class RandomTracks(TrackSampler):
    """``k`` distinct tracks drawn per batch (returned in increasing order)."""

    def __init__(self, track_names, k: int):
        super().__init__(track_names)
        self.k = _check_int(k, "tracks (k)", 1)
        if self.k > self.n_tracks:
            raise ValueError(f"cannot draw k={self.k} tracks per batch from {self.n_tracks} tracks")
        self.n_per_batch = self.k

    def __call__(self, rng, stream_index):
        return np.sort(rng.choice(self.n_tracks, size=self.k, replace=False)).astype(np.int64)


class FixedTracks(TrackSampler):
    """The same list of tracks (names or indices) for every batch, in the given order."""

    def __init__(self, track_names, selection):
        super().__init__(track_names)
        self.indices = self.resolve(selection)
        if len(np.unique(self.indices)) != len(self.indices):
            raise ValueError("tracks: the fixed track list names a track twice")
        self.indices.setflags(write=False)
        self.n_per_batch = len(self.indices)

    def __call__(self, rng, stream_index):
        return self.indices.copy()


class CustomTracks(TrackSampler):
    """Per-batch selections from the user: a sequence of selections (batch ``i`` uses item
    ``i % len``), a callable ``f(rng, stream_index) -> selection``, or a one-shot iterable read
    forward (one item per global batch; it cannot be rewound)."""

    def __init__(self, track_names, source):
        super().__init__(track_names)
        self._callable = source if callable(source) and not isinstance(source, Iterable) else None
        self._seq = None
        self._it = None
        if self._callable is None:
            if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
                if len(source) == 0:
                    raise ValueError("tracks: the per-batch track sequence is empty")
                self._seq = [self.resolve(s, f"tracks[{i}]") for i, s in enumerate(source)]
                sizes = {len(s) for s in self._seq}
                self.n_per_batch = sizes.pop() if len(sizes) == 1 else None
            elif isinstance(source, Iterable):
                self._it = iter(source)
                self._lock = threading.Lock()
                self._next = 0
                self._last: tuple[int, np.ndarray] | None = None
            else:
                raise TypeError(f"tracks: cannot use {type(source).__name__} as a track source")

    def __getstate__(self):
        if self._it is not None:
            raise TypeError("a one-shot track iterable cannot be pickled; pass a list of selections")
        return self.__dict__.copy()

    def __call__(self, rng, stream_index):
        if self._callable is not None:
            return self.resolve(self._callable(rng, stream_index))
        if self._seq is not None:
            return self._seq[stream_index % len(self._seq)].copy()
        with self._lock:
            if self._last is not None and self._last[0] == stream_index:
                return self._last[1].copy()
            if stream_index < self._next:
                raise RuntimeError(
                    "tracks: a one-shot track iterable can only be read forward; pass a list of "
                    "selections to allow re-iteration and random access"
                )
            item = None
            while self._next <= stream_index:
                try:
                    item = next(self._it)
                except StopIteration:
                    raise RuntimeError("tracks: the track iterable ran out of selections") from None
                self._next += 1
            sel = self.resolve(item)
            self._last = (stream_index, sel)
            return sel.copy()


def make_track_sampler(spec, track_names: Sequence[str]) -> TrackSampler:
    """``None`` -> all tracks; an ``int`` k -> k random tracks per batch; a list of names/indices ->
    that fixed list; a list of lists, a callable or another iterable -> per-batch selections;
    a TrackSampler -> itself."""
    if isinstance(spec, TrackSampler):
        return spec
    if spec is None or (isinstance(spec, str) and spec == "all"):
        return AllTracks(track_names)
    if isinstance(spec, bool):
        raise TypeError("tracks must be None, an int, a list of names, or an iterable of selections; got a bool")
    if isinstance(spec, (int, np.integer)):
        return RandomTracks(track_names, int(spec))
    if isinstance(spec, str):
        return FixedTracks(track_names, [spec])
    if isinstance(spec, (list, tuple, np.ndarray)):
        items = list(spec)
        if items and all(isinstance(x, (str, np.str_, int, np.integer)) and not isinstance(x, bool) for x in items):
            return FixedTracks(track_names, items)
        return CustomTracks(track_names, items)
    if callable(spec) or isinstance(spec, Iterable):
        return CustomTracks(track_names, spec)
    raise TypeError(f"tracks: cannot use {type(spec).__name__} as a track selection")

"""QueryBatchGenerator: the stream of query batches (where to read, which tracks, which strand).

Batch ``g`` of epoch ``e`` (``g`` counts batches over all ranks) is drawn from
``np.random.default_rng([seed, e, g])``, so it is a pure function of (seed, epoch, g): the same on
any machine, with any number of consumer threads, and independent of the number of ranks. Rank ``r``
of ``world_size`` owns the global batches ``g = i * world_size + r`` for ``i < len(generator)``:
disjoint shards with equal batch counts.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..sequence import check_chromosomes
from ..sequence import unknown_fraction as _seq_unknown_fraction
from .mixture import MixtureCounts, RegionSource, is_region_mixture, parse_region_mixture
from .regions import Regions, load_regions, subtract
from .samplers import (
    ArrayPositions,
    FixedTracks,
    RandomTracks,
    RegionSampler,
    StreamPositions,
    TrackSampler,
    _check_int,
    make_position_source,
    make_track_sampler,
    positions_in_regions,
)
from .strands import PairedRandomTracks, StrandPairs

__all__ = ["QueryBatch", "QueryBatchGenerator", "distributed_rank_world_size"]

# rounds of redrawing windows rejected by the unknown-base filter before giving up
_MAX_FILTER_ROUNDS = 20
# largest factor of oversampling in one redraw round
_MAX_OVERSAMPLE = 64


@dataclass(eq=False)
class QueryBatch:
    """One batch of queries.

    ``starts``/``ends`` are the input windows (``ends - starts == sequence_length``);
    ``target_starts``/``target_ends`` the centred crop whose values are predicted
    (``center_bin_to_predict`` long; the whole window when it is None).
    ``sequence_codes`` holds the forward-strand ASCII codes of the windows when the generator read
    them (for the unknown-base filter), else None. ``strand_partners`` gives, per track column, the
    column of its strand partner (itself when unpaired; None without strand pairs): a
    reverse-complemented sample swaps those columns. ``region_source`` is each sample's index into
    ``region_source_names`` (the mixture's sources; ``("regions",)`` or ``("positions",)`` otherwise).
    """

    chromosomes: np.ndarray        # str, (batch,)
    starts: np.ndarray             # int64, (batch,)
    ends: np.ndarray               # int64, (batch,)
    target_starts: np.ndarray      # int64, (batch,)
    target_ends: np.ndarray        # int64, (batch,)
    track_indices: np.ndarray      # int64, (n_tracks,)
    track_names: tuple[str, ...]
    reverse_complement: np.ndarray  # bool, (batch,)
    epoch: int
    index: int                     # batch index within this rank's epoch
    global_index: int              # batch index over all ranks
    sequence_codes: np.ndarray | None = None
    strand_partners: np.ndarray | None = None
    region_source: np.ndarray | None = None
    region_source_names: tuple[str, ...] = ()

    @property
    def batch_size(self) -> int:
        return int(self.starts.shape[0])

    @property
    def sequence_length(self) -> int:
        return int(self.ends[0] - self.starts[0]) if self.batch_size else 0

    @property
    def target_length(self) -> int:
        return int(self.target_ends[0] - self.target_starts[0]) if self.batch_size else 0

    def __len__(self) -> int:
        return self.batch_size


def distributed_rank_world_size() -> tuple[int, int] | None:
    """(rank, world_size) from an initialised ``torch.distributed``, else None.

    torch is never imported here: if it is not imported yet, no process group can exist.
    """
    if "torch" not in sys.modules:
        return None
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
    except Exception:  # a broken or partial torch install: behave as single-process
        return None
    return None


class QueryBatchGenerator:
    """Iterable of :class:`QueryBatch` for one epoch (``set_epoch`` moves to another epoch).

    Parameters
    ----------
    chrom_sizes, track_names:
        the collection's chromosome namespace and track names (``BigWigCollection.chrom_sizes`` and
        ``.track_names``).
    regions, exclude:
        where window centres are drawn (anything :func:`load_regions` accepts; None = every
        chromosome) and what to remove from it (blacklist; chromosomes unknown to the collection are
        ignored). With ``positions``, they filter the positions' centres instead. ``regions`` may
        also be a weighted mixture of named sources (a mapping ``name -> {regions, weight,
        exclude}`` or a list of :class:`RegionSource`): each batch draws from the sources in
        proportion to their weights (see :mod:`.mixture`); ``exclude`` applies to every source.
    sequence_length:
        input window length; windows always lie inside their chromosome.
    center_bin_to_predict:
        length of the centred target crop (a multiple of ``window_size``, <= sequence_length);
        None = the whole window (then sequence_length must be a multiple of window_size).
    window_size, batch_size:
        bases per output bin; queries per batch.
    batches_per_epoch:
        global batches per epoch over all ranks (rounded down to a multiple of ``world_size``).
        Default: total region length // sequence_length // batch_size (at least one per rank), or
        len(positions) // batch_size.
    jitter:
        each window is shifted by a uniform integer in [-jitter, jitter].
    reverse_complement:
        flag each sample for reverse complement with probability 0.5.
    tracks:
        None (all), an int k (k random tracks per batch), a list of names/indices (fixed), a list of
        per-batch selections, a callable ``f(rng, stream_index)``, an iterable, or a TrackSampler.
    strand_pairs:
        track-name pairs of the two strands of stranded assays (a list of ``[plus, minus]`` or a
        mapping plus -> minus): a reverse-complemented sample swaps each pair's columns. With
        ``tracks=k`` pairs are drawn together; a fixed or per-batch selection must hold both
        tracks of a pair it touches (see :mod:`.strands`).
    positions:
        a custom source of (chrom, centre) pairs (list, DataFrame, iterable, or a PositionSource)
        used instead of region sampling. Finite iterables are read once; a non-sized iterable with
        ``batches_per_epoch`` given is streamed (read forward, not rewindable).
    seed, rank, world_size:
        queries are a pure function of (seed, epoch, batch index, rank, world_size). When rank and
        world_size are both None they come from an initialised ``torch.distributed``, else 0 and 1.
    max_unknown_fraction, genome:
        drop and redraw windows whose fraction of non-ACGT bases exceeds this (needs a
        ReferenceGenome).
    contain:
        "center" (default): centres lie in the regions; "window": whole windows lie in the regions.
    """

    def __init__(
        self,
        chrom_sizes: Mapping[str, int],
        track_names: Sequence[str],
        regions=None,
        exclude=None,
        sequence_length: int = 1000,
        center_bin_to_predict: int | None = None,
        window_size: int = 1,
        batch_size: int = 32,
        batches_per_epoch: int | None = None,
        jitter: int = 0,
        reverse_complement: bool = False,
        tracks=None,
        positions=None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        max_unknown_fraction: float | None = None,
        genome=None,
        contain: str = "center",
        unknown_chroms: str = "error",
        strand_pairs=None,
    ):
        # -- plain arguments ----------------------------------------------------------------------
        if not isinstance(chrom_sizes, Mapping) or not chrom_sizes:
            raise ValueError("chrom_sizes must be a non-empty mapping of chromosome name -> size")
        if isinstance(track_names, str) or not isinstance(track_names, Sequence) or len(track_names) == 0:
            raise ValueError("track_names must be a non-empty list of track names")
        self.chrom_sizes = {str(k): int(v) for k, v in chrom_sizes.items()}
        self._names_arr = np.asarray(tuple(self.chrom_sizes), dtype=str)
        self._sizes_arr = np.asarray(tuple(self.chrom_sizes.values()), dtype=np.int64)
        if contain not in ("center", "window"):
            raise ValueError(f"contain must be 'center' or 'window', got {contain!r}")
        if unknown_chroms not in ("error", "drop"):
            raise ValueError(f"unknown_chroms must be 'error' or 'drop', got {unknown_chroms!r}")
        self.track_names = [str(t) for t in track_names]
        if len(set(self.track_names)) != len(self.track_names):
            raise ValueError("track_names contains duplicates")
        self.sequence_length = _check_int(sequence_length, "sequence_length", 1)
        self.window_size = _check_int(window_size, "window_size", 1)
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.jitter = _check_int(jitter, "jitter", 0)
        self.seed = _check_int(seed, "seed", 0)
        if not isinstance(reverse_complement, (bool, np.bool_)):
            raise TypeError(f"reverse_complement must be True or False, got {reverse_complement!r}")
        self.reverse_complement = bool(reverse_complement)
        if self.window_size > self.sequence_length:
            raise ValueError(
                f"window_size ({self.window_size}) must be <= sequence_length ({self.sequence_length})"
            )
        if center_bin_to_predict is None:
            if self.sequence_length % self.window_size:
                raise ValueError(
                    f"sequence_length ({self.sequence_length}) must be a multiple of window_size "
                    f"({self.window_size}) when center_bin_to_predict is None"
                )
            self.center_bin_to_predict = None
            self.target_length = self.sequence_length
        else:
            c = _check_int(center_bin_to_predict, "center_bin_to_predict", 1)
            if c > self.sequence_length:
                raise ValueError(
                    f"center_bin_to_predict ({c}) must be <= sequence_length ({self.sequence_length})"
                )
            if c % self.window_size:
                raise ValueError(
                    f"center_bin_to_predict ({c}) must be a multiple of window_size ({self.window_size})"
                )
            self.center_bin_to_predict = c
            self.target_length = c
        self.target_offset = (self.sequence_length - self.target_length) // 2

        # -- ranks ----------------------------------------------------------------------------------
        if rank is None and world_size is None:
            self.rank, self.world_size = distributed_rank_world_size() or (0, 1)
        elif rank is None or world_size is None:
            raise ValueError("give both rank and world_size, or neither (then torch.distributed decides)")
        else:
            self.world_size = _check_int(world_size, "world_size", 1)
            self.rank = _check_int(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank ({self.rank}) must be < world_size ({self.world_size})")

        # -- unknown-base filter ----------------------------------------------------------------------
        if max_unknown_fraction is not None:
            if isinstance(max_unknown_fraction, bool) or not isinstance(max_unknown_fraction, (int, float, np.number)):
                raise TypeError(f"max_unknown_fraction must be a number in [0, 1], got {max_unknown_fraction!r}")
            max_unknown_fraction = float(max_unknown_fraction)
            if not 0.0 <= max_unknown_fraction <= 1.0:
                raise ValueError(f"max_unknown_fraction must be in [0, 1], got {max_unknown_fraction}")
            if genome is None:
                raise ValueError("max_unknown_fraction needs genome= (a ReferenceGenome) to read the bases")
        if genome is not None and not (hasattr(genome, "fetch_batch") and hasattr(genome, "chrom_sizes")):
            raise TypeError(f"genome must be a ReferenceGenome, got {type(genome).__name__}")
        self.max_unknown_fraction = max_unknown_fraction
        self.genome = genome
        if self.max_unknown_fraction is not None and self.max_unknown_fraction >= 1.0:
            self.max_unknown_fraction = None  # everything passes: no need to read bases

        # -- tracks ----------------------------------------------------------------------------------
        self.track_sampler: TrackSampler = make_track_sampler(tracks, self.track_names)
        self.strand_pairs: StrandPairs | None = StrandPairs.parse(strand_pairs, self.track_names)
        if self.strand_pairs is not None:
            self._pair_track_sampler()

        # -- positions -------------------------------------------------------------------------------
        self._stream: StreamPositions | None = None
        self._array_positions: ArrayPositions | None = None
        self._region_sampler: RegionSampler | None = None
        self.regions: Regions | None = None
        self.region_sources: tuple[RegionSource, ...] = ()
        self.region_source_names: tuple[str, ...] = ("regions",) if positions is None else ("positions",)
        self._mixture: list[tuple[RegionSource, RegionSampler, Regions]] | None = None
        if positions is not None and regions is not None and is_region_mixture(regions):
            raise ValueError("regions: a weighted mixture of sources cannot filter custom positions; "
                             "give one regions set, or drop positions")
        if positions is None and is_region_mixture(regions):
            self._init_mixture(regions, exclude, unknown_chroms, contain)
            if batches_per_epoch is None:
                total = sum(r.total_length for _, _, r in self._mixture)
                batches_per_epoch = max(self.world_size, total // self.sequence_length // self.batch_size)
        elif positions is None:
            regions_obj = load_regions(regions, self.chrom_sizes, unknown_chroms=unknown_chroms)
            if exclude is not None:
                regions_obj = subtract(regions_obj, exclude)
            if len(regions_obj) == 0:
                raise ValueError("no region is left to sample from (after clipping and exclusion)")
            self.regions = regions_obj
            self._region_sampler = RegionSampler(regions_obj, self.sequence_length, self.jitter, contain)
            self._check_genome(self._region_sampler.chrom_ids)
            if batches_per_epoch is None:
                batches_per_epoch = max(self.world_size,
                                        regions_obj.total_length // self.sequence_length // self.batch_size)
        else:
            source = make_position_source(positions, self.chrom_sizes, self.sequence_length,
                                          streaming=batches_per_epoch is not None)
            if source.chrom_names != tuple(self.chrom_sizes):
                raise ValueError("positions: the PositionSource was built for other chrom_sizes")
            if isinstance(source, StreamPositions):
                self._stream = source
                self._filter_regions = load_regions(regions, self.chrom_sizes, unknown_chroms="drop") \
                    if regions is not None else None
                self._filter_exclude = load_regions(exclude, self.chrom_sizes, unknown_chroms="drop") \
                    if exclude is not None else None
            else:
                self._check_genome(source.chrom_ids)
                source = self._prefilter_positions(source, regions, exclude)
                self._array_positions = source
                if len(source) == 0:
                    raise ValueError("positions: no position is left after the region, exclusion and "
                                     "unknown-base filters")
                if batches_per_epoch is None:
                    batches_per_epoch = len(source) // self.batch_size
                    if batches_per_epoch < self.world_size:
                        raise ValueError(
                            f"positions: {len(source)} usable position(s) make fewer than one batch of "
                            f"{self.batch_size} per rank (world_size {self.world_size})"
                        )
        self.batches_per_epoch = _check_int(batches_per_epoch, "batches_per_epoch", 1)
        self._per_rank = self.batches_per_epoch // self.world_size
        if self._per_rank == 0:
            raise ValueError(
                f"batches_per_epoch ({self.batches_per_epoch}) must be >= world_size ({self.world_size}) "
                "so that every rank gets a batch"
            )
        self._global_per_epoch = self._per_rank * self.world_size
        self.epoch = 0

    # ------------------------------------------------------------------------------------------------
    def _pair_track_sampler(self) -> None:
        """Keep strand pairs together: k random tracks are drawn in pairs; fixed or listed
        selections that split a pair are refused now (a callable or iterable, at its batch)."""
        pairs, sampler = self.strand_pairs, self.track_sampler
        if type(sampler) is RandomTracks:
            self.track_sampler = PairedRandomTracks(self.track_names, sampler.k, pairs)
        elif isinstance(sampler, FixedTracks):
            pairs.columns(sampler.indices)
        elif getattr(sampler, "_seq", None) is not None:
            for i, sel in enumerate(sampler._seq):
                pairs.columns(sel, f"tracks[{i}]")

    def _init_mixture(self, spec, exclude, unknown_chroms, contain) -> None:
        """One RegionSampler per source (its regions minus its own and the global exclusion)."""
        self.region_sources = parse_region_mixture(spec)
        self.region_source_names = tuple(s.name for s in self.region_sources)
        mixture = []
        for src in self.region_sources:
            try:
                reg = load_regions(src.regions, self.chrom_sizes, unknown_chroms=unknown_chroms)
                for exc in (src.exclude, exclude):
                    if exc is not None:
                        reg = subtract(reg, exc)
                if len(reg) == 0:
                    raise ValueError("no region is left to sample from (after clipping and exclusion)")
                sampler = RegionSampler(reg, self.sequence_length, self.jitter, contain) if src.weight > 0 else None
            except (ValueError, TypeError, OSError) as exc:
                # the plain class of the error (a UnicodeDecodeError cannot be rebuilt from a message)
                cls = next(c for c in (FileNotFoundError, OSError, TypeError, ValueError) if isinstance(exc, c))
                raise cls(f"regions: source {src.name!r}: {str(exc).removeprefix('regions: ')}") from None
            mixture.append((src, sampler, reg))
        self._mixture = mixture
        self._mix_counts = MixtureCounts([s.weight for s in self.region_sources], self.batch_size)
        union = [r for _, _, r in mixture]
        self.regions = Regions.from_arrays(
            self.chrom_sizes, np.concatenate([r.chroms for r in union]),
            np.concatenate([r.starts for r in union]), np.concatenate([r.ends for r in union]),
            source="regions mixture")
        for _, sampler, _ in mixture:
            if sampler is not None:
                self._check_genome(sampler.chrom_ids)

    def _check_genome(self, chrom_ids: np.ndarray) -> None:
        """Every chromosome that can be queried must be in the FASTA: fail now, not mid-epoch."""
        if self.genome is None:
            return
        queried = self._names_arr[np.unique(chrom_ids)].tolist()
        check_chromosomes(list(self.chrom_sizes), self.genome, query_chroms=queried)

    def _position_mask(self, ids, centres, regions, exclude) -> np.ndarray:
        keep = np.ones(len(ids), dtype=bool)
        if regions is not None:
            keep &= positions_in_regions(regions, ids, centres)
        if exclude is not None:
            keep &= ~positions_in_regions(exclude, ids, centres)
        return keep

    def _prefilter_positions(self, source: ArrayPositions, regions, exclude) -> ArrayPositions:
        """Restrict fixed positions to ``regions`` minus ``exclude`` and, with the unknown-base
        filter, to windows with few enough unknown bases (checked once, in chunks)."""
        reg = load_regions(regions, self.chrom_sizes, unknown_chroms="drop") if regions is not None else None
        exc = load_regions(exclude, self.chrom_sizes, unknown_chroms="drop") if exclude is not None else None
        keep = self._position_mask(source.chrom_ids, source.centres, reg, exc)
        if self.max_unknown_fraction is not None:
            names = np.asarray(source.chrom_names, dtype=str)
            starts = source.centres - self.sequence_length // 2
            # with jitter a window may move; check the unshifted window here and the shifted one per batch
            chunk = max(1, (1 << 22) // self.sequence_length)
            for lo in range(0, len(starts), chunk):
                sl = slice(lo, lo + chunk)
                codes = self.genome.fetch_batch(names[source.chrom_ids[sl]], starts[sl], starts[sl] + self.sequence_length)
                keep[sl] &= _unknown_fraction(codes) <= self.max_unknown_fraction
        if keep.all():
            return source
        return source.filtered(keep)

    # ------------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that the next iteration yields (like DistributedSampler.set_epoch)."""
        self.epoch = _check_int(epoch, "epoch", 0)

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return self._per_rank

    @property
    def names(self) -> np.ndarray:
        """Chromosome names (numpy str array) in chrom_sizes order."""
        return self._names_arr

    def __repr__(self) -> str:
        where = repr(self.regions) if self.regions is not None else "custom positions"
        if self._mixture is not None:
            where = "mixture " + ", ".join(f"{s.name} {f:.0%}" for (s, _, _), f in
                                           zip(self._mixture, self._mix_counts.fractions))
        return (f"QueryBatchGenerator({where}, sequence_length={self.sequence_length}, batch_size={self.batch_size}, "
                f"batches={len(self)}/rank, rank={self.rank}/{self.world_size}, seed={self.seed}, epoch={self.epoch})")

    def __iter__(self) -> Iterator[QueryBatch]:
        epoch = self.epoch
        if self._stream is not None:
            yield from self._iter_stream(epoch)
            return
        for i in range(self._per_rank):
            yield self.batch(i, epoch)

    def global_index(self, index: int) -> int:
        return index * self.world_size + self.rank

    def batch(self, index: int, epoch: int | None = None) -> QueryBatch:
        """Batch ``index`` (0 <= index < len(self)) of ``epoch`` (default: the current one) for this
        rank. A pure function of (seed, epoch, index, rank, world_size); safe to call from threads."""
        if self._stream is not None:
            raise TypeError("a streamed position source can only be iterated, not indexed")
        index = _check_int(index, "index", 0)
        if index >= self._per_rank:
            raise IndexError(f"batch index {index} out of range for {self._per_rank} batches per epoch")
        epoch = self.epoch if epoch is None else _check_int(epoch, "epoch", 0)
        g = self.global_index(index)
        rng = np.random.default_rng([self.seed, epoch, g])
        tracks = self.track_sampler(rng, epoch * self._global_per_epoch + g)
        rc = self._draw_rc(rng)
        source = None
        if self._mixture is not None:
            ids, starts, codes, source = self._draw_mixture(rng)
        elif self._region_sampler is not None:
            ids, starts, codes = self._draw_region_windows(rng, self._region_sampler, self.batch_size)
        else:
            ids, centres = self._array_positions.take(self.seed, epoch, g, self.batch_size)
            starts = self._shift(rng, ids, centres)
            codes = None
            if self.max_unknown_fraction is not None and self.jitter:
                ids, starts, codes = self._refill_positions(rng, ids, starts, epoch, g)
        return self._make(ids, starts, tracks, rc, codes, epoch, index, g, source)

    # ------------------------------------------------------------------------------------------------
    def _draw_rc(self, rng) -> np.ndarray:
        if not self.reverse_complement:
            return np.zeros(self.batch_size, dtype=bool)
        return rng.random(self.batch_size) < 0.5

    def _shift(self, rng, ids, centres) -> np.ndarray:
        """Window starts for ``centres``, shifted by the jitter and kept inside the chromosome."""
        starts = centres - self.sequence_length // 2
        if self.jitter:
            starts = starts + rng.integers(-self.jitter, self.jitter + 1, size=len(centres), dtype=np.int64)
            starts = np.clip(starts, 0, self._sizes_arr[ids] - self.sequence_length)
        return starts

    def _codes(self, ids, starts) -> np.ndarray:
        return self.genome.fetch_batch(self.names[ids], starts, starts + self.sequence_length)

    def _draw_mixture(self, rng):
        """Counts per source, a shuffled assignment of batch slots to sources, then each source's
        windows (redrawn from the same source when the unknown-base filter rejects one)."""
        counts = self._mix_counts(rng)
        source = rng.permutation(np.repeat(np.arange(len(counts), dtype=np.int64), counts))
        n = self.batch_size
        ids = np.empty(n, dtype=np.int64)
        starts = np.empty(n, dtype=np.int64)
        codes = None
        for i, (_, sampler, _) in enumerate(self._mixture):
            if counts[i] == 0:
                continue
            slots = source == i
            s_ids, s_starts, s_codes = self._draw_region_windows(rng, sampler, int(counts[i]))
            ids[slots], starts[slots] = s_ids, s_starts
            if s_codes is not None:
                if codes is None:
                    codes = np.empty((n,) + s_codes.shape[1:], dtype=s_codes.dtype)
                codes[slots] = s_codes
        return ids, starts, codes, source

    def _draw_region_windows(self, rng, sampler: RegionSampler, n: int):
        ids, centres = sampler.sample(rng, n)
        starts = self._shift(rng, ids, centres)
        if self.max_unknown_fraction is None:
            return ids, starts, None
        codes = self._codes(ids, starts)
        ok = _unknown_fraction(codes) <= self.max_unknown_fraction
        drawn, accepted = n, int(ok.sum())
        parts = [(ids[ok], starts[ok], codes[ok])]
        rounds = 0
        while accepted < n:
            rounds += 1
            if rounds > _MAX_FILTER_ROUNDS:
                raise RuntimeError(
                    f"could not find {n} windows of {self.sequence_length} bp with at most "
                    f"{self.max_unknown_fraction:.1%} unknown (non-ACGT) bases: {accepted} of {drawn} drawn "
                    f"windows passed. The regions are mostly N/gaps: exclude gap regions, use other "
                    f"regions, or raise max_unknown_fraction"
                )
            need = n - accepted
            rate = max(accepted / drawn, 1.0 / _MAX_OVERSAMPLE)
            m = min(int(math.ceil(need / rate * 1.25)), need * _MAX_OVERSAMPLE)
            ids, centres = sampler.sample(rng, m)
            starts = self._shift(rng, ids, centres)
            codes = self._codes(ids, starts)
            ok = _unknown_fraction(codes) <= self.max_unknown_fraction
            drawn += m
            accepted += int(ok.sum())
            parts.append((ids[ok], starts[ok], codes[ok]))
        ids = np.concatenate([p[0] for p in parts])[:n]
        starts = np.concatenate([p[1] for p in parts])[:n]
        codes = np.concatenate([p[2] for p in parts])[:n]
        return ids, starts, codes

    def _refill_positions(self, rng, ids, starts, epoch, g):
        """Fixed positions with jitter: a shifted window that fails the filter falls back to its
        unshifted window (which passed the filter when the positions were loaded)."""
        codes = self._codes(ids, starts)
        bad = _unknown_fraction(codes) > self.max_unknown_fraction
        if bad.any():
            _, centres = self._array_positions.take(self.seed, epoch, g, self.batch_size)
            starts = starts.copy()
            starts[bad] = centres[bad] - self.sequence_length // 2
            codes[bad] = self._codes(ids[bad], starts[bad])
        return ids, starts, codes

    def _make(self, ids, starts, tracks, rc, codes, epoch, index, g, source=None) -> QueryBatch:
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        tracks = np.asarray(tracks, dtype=np.int64)
        partners = None
        if self.strand_pairs is not None:
            partners = self.strand_pairs.columns(tracks, f"tracks (batch {g} of epoch {epoch})")
        if source is None:
            source = np.zeros(len(starts), dtype=np.int64)
        ends = starts + self.sequence_length
        t_starts = starts + self.target_offset
        return QueryBatch(
            chromosomes=self.names[ids],
            starts=starts,
            ends=ends,
            target_starts=t_starts,
            target_ends=t_starts + self.target_length,
            track_indices=np.asarray(tracks, dtype=np.int64),
            track_names=tuple(self.track_names[i] for i in tracks.tolist()),
            reverse_complement=rc,
            epoch=epoch,
            index=index,
            global_index=g,
            sequence_codes=codes,
            strand_partners=partners,
            region_source=source,
            region_source_names=self.region_source_names,
        )

    # -- streamed positions ---------------------------------------------------------------------------
    def _iter_stream(self, epoch: int) -> Iterator[QueryBatch]:
        """Read the stream forward; every rank reads every batch and keeps its own."""
        n = self.batch_size
        for g in range(self._global_per_epoch):
            rng = np.random.default_rng([self.seed, epoch, g])
            tracks = self.track_sampler(rng, epoch * self._global_per_epoch + g)
            rc = self._draw_rc(rng)
            got_ids, got_starts, got_codes, have = [], [], [], 0
            while have < n:
                ids, centres = self._stream.read(n - have)
                if len(ids) == 0:
                    return  # the stream ended: the epoch ends (a partial batch is dropped)
                keep = self._position_mask(ids, centres, self._filter_regions, self._filter_exclude)
                ids, centres = ids[keep], centres[keep]
                starts = self._shift(rng, ids, centres)
                codes = None
                if self.max_unknown_fraction is not None and len(ids):
                    codes = self._codes(ids, starts)
                    ok = _unknown_fraction(codes) <= self.max_unknown_fraction
                    ids, starts, codes = ids[ok], starts[ok], codes[ok]
                got_ids.append(ids)
                got_starts.append(starts)
                got_codes.append(codes)
                have += len(ids)
            if g % self.world_size != self.rank:
                continue
            codes = np.concatenate(got_codes) if self.max_unknown_fraction is not None else None
            yield self._make(np.concatenate(got_ids), np.concatenate(got_starts), tracks, rc, codes,
                             epoch, g // self.world_size, g)


def _unknown_fraction(codes: np.ndarray) -> np.ndarray:
    return np.asarray(_seq_unknown_fraction(codes), dtype=np.float64).reshape(len(codes))

"""Genomic regions: loading (BED, DataFrame, tuples, "all"), clipping, merging and subtraction.

A :class:`Regions` holds numpy arrays (chromosome ids into ``chrom_names``, int64 starts and ends),
clipped to the chromosome sizes, sorted by (chromosome order of ``chrom_sizes``, start) and merged
(overlapping or book-ended intervals join; the merged end is the running maximum of the ends, so an
interval contained in a previous one never truncates it). Coordinates are 0-based, half-open.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Regions", "load_regions", "parse_bed", "subtract"]

_UNKNOWN_CHOICES = ("error", "drop")
_CHROM_COLUMNS = ("chrom", "chromosome", "chr", "seqname", "seqnames", "contig")
_START_COLUMNS = ("start", "chromstart", "begin")
_END_COLUMNS = ("end", "chromend", "stop")


def _preview(names, n: int = 5) -> str:
    names = list(names)
    return ", ".join(map(str, names[:n])) + (", ..." if len(names) > n else "")


@dataclass(frozen=True, eq=False)
class Regions:
    """Sorted, merged, clipped intervals over the chromosomes of ``chrom_sizes``.

    Build one with :func:`load_regions` (or :meth:`from_arrays`), not by hand.
    """

    chrom_names: tuple[str, ...]  # every chromosome of chrom_sizes, in its order
    chrom_lengths: np.ndarray     # int64 sizes, aligned with chrom_names
    chrom_ids: np.ndarray         # int64 index into chrom_names, one per interval
    starts: np.ndarray            # int64
    ends: np.ndarray              # int64

    def __post_init__(self):
        for arr in (self.chrom_lengths, self.chrom_ids, self.starts, self.ends):
            arr.setflags(write=False)  # shared by samplers and generators: never modified in place

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, chrom_sizes: Mapping[str, int], chroms, starts, ends, *,
                    unknown_chroms: str = "error", source: str = "regions", merge: bool = True) -> "Regions":
        """Clip, sort and merge intervals given as arrays of chromosome names, starts and ends."""
        if unknown_chroms not in _UNKNOWN_CHOICES:
            raise ValueError(f"unknown_chroms must be one of {_UNKNOWN_CHOICES}, got {unknown_chroms!r}")
        names = tuple(str(c) for c in chrom_sizes)
        if not names:
            raise ValueError("chrom_sizes is empty")
        lengths = np.fromiter((int(chrom_sizes[c]) for c in chrom_sizes), dtype=np.int64, count=len(names))
        if np.any(lengths < 0):
            raise ValueError("chromosome sizes must be non-negative")
        chroms = np.asarray(chroms).astype(str).reshape(-1)
        starts = _as_int64(starts, "start", source)
        ends = _as_int64(ends, "end", source)
        if not (len(chroms) == len(starts) == len(ends)):
            raise ValueError(f"{source}: chrom, start and end columns have different lengths")
        bad = np.flatnonzero(ends < starts)
        if bad.size:
            i = bad[0]
            raise ValueError(
                f"{source}: {bad.size} interval(s) have end < start, first: "
                f"{chroms[i]}:{starts[i]}-{ends[i]} (row {i})"
            )
        # chromosome ids, vectorised: sort the known names and searchsorted the queried ones
        order = np.argsort(np.asarray(names, dtype=str), kind="stable")
        sorted_names = np.asarray(names, dtype=str)[order]
        pos = np.searchsorted(sorted_names, chroms)
        pos_c = np.minimum(pos, len(names) - 1)
        known = sorted_names[pos_c] == chroms if len(chroms) else np.zeros(0, dtype=bool)
        if not known.all():
            missing = list(dict.fromkeys(chroms[~known].tolist()))
            if unknown_chroms == "error":
                raise ValueError(
                    f"{source}: {len(missing)} chromosome(s) not in the bigWig chromosome list: "
                    f"{_preview(missing)} (known: {_preview(names)}); pass unknown_chroms='drop' to ignore them"
                )
            chroms, starts, ends, pos_c, known = chroms[known], starts[known], ends[known], pos_c[known], known[known]
        ids = order[pos_c].astype(np.int64)
        # clip to the chromosome and drop what is left empty
        starts = np.clip(starts, 0, lengths[ids])
        ends = np.clip(ends, 0, lengths[ids])
        keep = ends > starts
        ids, starts, ends = ids[keep], starts[keep], ends[keep]
        sort = np.lexsort((ends, starts, ids))
        ids, starts, ends = ids[sort], starts[sort], ends[sort]
        if merge:
            ids, starts, ends = _merge_sorted(ids, starts, ends)
        return cls(names, lengths, ids, starts, ends)

    # -- views -----------------------------------------------------------------------------------
    @property
    def chrom_sizes(self) -> dict[str, int]:
        return dict(zip(self.chrom_names, self.chrom_lengths.tolist()))

    @property
    def chroms(self) -> np.ndarray:
        """Chromosome name of every interval (numpy str array)."""
        return np.asarray(self.chrom_names, dtype=str)[self.chrom_ids] if len(self) else np.zeros(0, dtype=str)

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    @property
    def total_length(self) -> int:
        return int(self.lengths.sum())

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def __iter__(self):
        names = self.chrom_names
        return iter([(names[c], s, e) for c, s, e in
                     zip(self.chrom_ids.tolist(), self.starts.tolist(), self.ends.tolist())])

    def __repr__(self) -> str:
        return f"Regions({len(self)} intervals, {self.total_length:,} bp on {len(np.unique(self.chrom_ids))} chromosomes)"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Regions):
            return NotImplemented
        return (self.chrom_names == other.chrom_names and np.array_equal(self.chrom_ids, other.chrom_ids)
                and np.array_equal(self.starts, other.starts) and np.array_equal(self.ends, other.ends))

    def to_list(self) -> list[tuple[str, int, int]]:
        return list(self)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({"chrom": self.chroms, "start": self.starts.copy(), "end": self.ends.copy()})

    def global_offsets(self) -> np.ndarray:
        """Start of each chromosome on the concatenated genome (int64; no 32-bit overflow)."""
        return np.concatenate([[0], np.cumsum(self.chrom_lengths)[:-1]]).astype(np.int64)

    def subtract(self, exclude) -> "Regions":
        return subtract(self, exclude)


def _as_int64(values, what: str, source: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{source}: {what} coordinates must be whole numbers")
    elif arr.dtype.kind not in "iu" and arr.size:
        try:
            arr = arr.astype(np.int64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {what} coordinates must be integers ({exc})") from None
    return arr.astype(np.int64).reshape(-1)


def _merge_sorted(ids: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """Merge intervals sorted by (id, start): overlapping or touching intervals on the same
    chromosome join; the merged end is the running maximum (contained intervals do not truncate)."""
    n = len(starts)
    if n == 0:
        return ids, starts, ends
    # running max of the ends within each chromosome: the ends are offset by a per-chromosome
    # base that exceeds every earlier chromosome's ends, so one global accumulate is enough
    key_base = np.zeros(n, dtype=np.int64)
    if n > 1:
        span = int(max(ends.max(), 0)) + 1
        key_base = ids * span
    run_max = np.maximum.accumulate(ends + key_base) - key_base
    new = np.ones(n, dtype=bool)
    new[1:] = (ids[1:] != ids[:-1]) | (starts[1:] > run_max[:-1])
    first = np.flatnonzero(new)
    return ids[first], starts[first], np.maximum.reduceat(ends, first)


def _read_bed(path: str, chrom_sizes, unknown_chroms: str) -> Regions:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        fh = opener(path, "rt")
    except OSError as exc:
        raise FileNotFoundError(f"cannot open BED file {path}: {exc}") from exc
    with fh:
        return parse_bed(fh, chrom_sizes, unknown_chroms=unknown_chroms, source=path)


def parse_bed(text, chrom_sizes: Mapping[str, int], *, unknown_chroms: str = "error",
              source: str = "BED") -> Regions:
    """Regions from BED *content* (not a path): a str or bytes (UTF-8, gzip-compressed allowed),
    or an iterable of lines (an open text file). For uploads and in-memory data: no temporary
    file. Errors name ``source`` and the line (``source:line: ...``)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{source}: not a text (UTF-8) BED file ({exc.reason} at byte {exc.start})") from None
    lines = text.splitlines() if isinstance(text, str) else text
    chroms, starts, ends = [], [], []
    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "track", "browser")):
            continue
        fields = stripped.split("\t") if "\t" in stripped else stripped.split()
        if len(fields) < 3:
            raise ValueError(
                f"{source}:{lineno}: a BED line needs at least 3 columns (chrom, start, end), got {len(fields)}: {stripped[:80]!r}"
            )
        chrom, s, e = fields[0].strip(), fields[1].strip(), fields[2].strip()
        try:
            s_i, e_i = int(s), int(e)
        except ValueError:
            raise ValueError(
                f"{source}:{lineno}: start and end must be integers, got {s!r} and {e!r}"
            ) from None
        if s_i < 0 or e_i < s_i:
            raise ValueError(f"{source}:{lineno}: invalid interval {chrom}:{s_i}-{e_i} (need 0 <= start <= end)")
        chroms.append(chrom)
        starts.append(s_i)
        ends.append(e_i)
    return Regions.from_arrays(chrom_sizes, np.asarray(chroms, dtype=str), np.asarray(starts, dtype=np.int64),
                               np.asarray(ends, dtype=np.int64), unknown_chroms=unknown_chroms, source=source)


def _find_column(columns, candidates, what):
    lower = {str(c).lower(): c for c in columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    raise ValueError(f"DataFrame needs a {what} column (one of {candidates}); it has {list(columns)}")


def load_regions(spec, chrom_sizes: Mapping[str, int], *, unknown_chroms: str = "error") -> Regions:
    """Load regions from

    - ``None`` or ``"all"``: every chromosome of ``chrom_sizes``, whole;
    - a BED path (``str``/``PathLike``; 3+ columns; ``#``, ``track`` and ``browser`` lines skipped;
      ``.gz`` allowed);
    - a pandas DataFrame with chrom/start/end columns (also chromosome/chromStart/chromEnd; the
      caller's frame is never modified);
    - an iterable of ``(chrom, start, end)`` tuples;
    - a :class:`Regions` (re-clipped to ``chrom_sizes``).

    Intervals are clipped to the chromosome sizes, sorted and merged. Chromosomes missing from
    ``chrom_sizes`` raise a ``ValueError`` listing them, or are dropped with ``unknown_chroms="drop"``.
    """
    if not isinstance(chrom_sizes, Mapping) or not chrom_sizes:
        raise ValueError("chrom_sizes must be a non-empty mapping of chromosome name -> size")
    if unknown_chroms not in _UNKNOWN_CHOICES:
        raise ValueError(f"unknown_chroms must be one of {_UNKNOWN_CHOICES}, got {unknown_chroms!r}")
    if spec is None or (isinstance(spec, str) and spec.lower() == "all"):
        names = list(chrom_sizes)
        return Regions.from_arrays(chrom_sizes, np.asarray(names, dtype=str), np.zeros(len(names), dtype=np.int64),
                                   [int(chrom_sizes[c]) for c in names], source="all chromosomes")
    if isinstance(spec, Regions):
        return Regions.from_arrays(chrom_sizes, spec.chroms, spec.starts, spec.ends,
                                   unknown_chroms=unknown_chroms, source="Regions")
    if isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        if not os.path.exists(path):
            raise FileNotFoundError(f"regions: BED file not found: {path}")
        return _read_bed(path, chrom_sizes, unknown_chroms)
    if hasattr(spec, "columns") and hasattr(spec, "__getitem__") and hasattr(spec, "shape"):  # DataFrame
        c_col = _find_column(spec.columns, _CHROM_COLUMNS, "chrom")
        s_col = _find_column(spec.columns, _START_COLUMNS, "start")
        e_col = _find_column(spec.columns, _END_COLUMNS, "end")
        # to_numpy copies or gives a read-only view; nothing below writes into the caller's frame
        chroms = np.asarray(spec[c_col].to_numpy()).astype(str)
        starts = np.array(spec[s_col].to_numpy(), copy=True)
        ends = np.array(spec[e_col].to_numpy(), copy=True)
        return Regions.from_arrays(chrom_sizes, chroms, starts, ends, unknown_chroms=unknown_chroms, source="DataFrame")
    if isinstance(spec, np.ndarray) and spec.dtype.names and len(spec.dtype.names) >= 3:
        f = spec.dtype.names
        return Regions.from_arrays(chrom_sizes, spec[f[0]], spec[f[1]], spec[f[2]],
                                   unknown_chroms=unknown_chroms, source="structured array")
    if isinstance(spec, Iterable):
        rows = list(spec)
        for i, row in enumerate(rows):
            if isinstance(row, (str, bytes)) or not hasattr(row, "__len__") or len(row) < 3:
                raise ValueError(f"regions: item {i} must be a (chrom, start, end) tuple, got {row!r}")
        chroms = np.asarray([str(r[0]) for r in rows], dtype=str)
        try:
            starts = np.asarray([int(r[1]) for r in rows], dtype=np.int64)
            ends = np.asarray([int(r[2]) for r in rows], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"regions: start and end must be integers ({exc})") from None
        return Regions.from_arrays(chrom_sizes, chroms, starts, ends, unknown_chroms=unknown_chroms, source="regions list")
    raise TypeError(
        f"regions must be None, 'all', a BED path, a DataFrame, a Regions or an iterable of "
        f"(chrom, start, end); got {type(spec).__name__}"
    )


def subtract(regions: Regions, exclude) -> Regions:
    """``regions`` minus ``exclude`` (a Regions or anything :func:`load_regions` accepts; its
    chromosomes unknown to ``regions`` are ignored). Vectorised sweep over all boundaries."""
    if exclude is None:
        return regions
    if not isinstance(exclude, Regions) or exclude.chrom_names != regions.chrom_names:
        exclude = load_regions(exclude, regions.chrom_sizes, unknown_chroms="drop")
    if len(regions) == 0 or len(exclude) == 0:
        return regions
    off = regions.global_offsets()
    a_s = off[regions.chrom_ids] + regions.starts
    a_e = off[regions.chrom_ids] + regions.ends
    b_s = off[exclude.chrom_ids] + exclude.starts
    b_e = off[exclude.chrom_ids] + exclude.ends
    # both sets are disjoint and sorted; an elementary segment [p_i, p_i+1) is inside a set when
    # (#starts <= p_i) - (#ends <= p_i) == 1
    points = np.unique(np.concatenate([a_s, a_e, b_s, b_e]))
    in_a = (np.searchsorted(a_s, points, "right") - np.searchsorted(a_e, points, "right")) > 0
    in_b = (np.searchsorted(b_s, points, "right") - np.searchsorted(b_e, points, "right")) > 0
    keep = (in_a & ~in_b)[:-1]
    seg_s, seg_e = points[:-1][keep], points[1:][keep]
    # back to (chromosome, local) coordinates; a kept segment lies inside one interval of `regions`
    # and hence inside one chromosome
    # (look the chromosome up through the containing interval: chromosomes of size 0 share
    # their offset with the next one)
    ids = np.searchsorted(a_s, seg_s, "right") - 1
    ids = regions.chrom_ids[ids]
    starts, ends = seg_s - off[ids], seg_e - off[ids]
    ids, starts, ends = _merge_sorted(ids.astype(np.int64), starts, ends)
    return Regions(regions.chrom_names, regions.chrom_lengths, ids, starts, ends)

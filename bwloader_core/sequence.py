"""Reference genome access and one-hot encoding.

Everything here works on *codes*: ``uint8`` arrays of ASCII bytes, one row per query.  All the
per-base work (one-hot encoding, the unknown-base fraction, reverse complement) is a gather through
a 256-entry lookup table, so any byte value is safe (nothing is ever indexed past a table), it is
fully vectorised, and soft-masked (lowercase) bases are encoded exactly like uppercase ones.

``ReferenceGenome`` reads plain or bgzipped FASTA files through pyfaidx (which builds the ``.fai``,
and for bgzip the ``.gzi``, index when missing).  Plain files are read with ``os.pread`` straight from
the byte offsets of the ``.fai`` index, which needs no lock, so several threads can fetch at once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "ReferenceGenome",
    "one_hot",
    "unknown_fraction",
    "reverse_complement_codes",
    "check_chromosomes",
    "as_codes",
    "resolve_one_hot_dtype",
]

_N = ord("N")

# --------------------------------------------------------------------------------------------------
# lookup tables (built once at import: plain numpy, no side effects)
# --------------------------------------------------------------------------------------------------

#: channel of each byte: 0..3 for A, C, G, T (either case), 4 for everything else
_CHANNEL = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CHANNEL[_b] = _i
    _CHANNEL[_b + 32] = _i  # lowercase
_CHANNEL.setflags(write=False)

#: True for every byte that is not A, C, G or T (either case)
_UNKNOWN = _CHANNEL == 4
_UNKNOWN.setflags(write=False)

#: complement of each byte; case is kept, IUPAC codes map to their complement, others to themselves
_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _c in zip(b"ACGTRYKMBVDHSWN", b"TGCAYRMKVBHDSWN"):
    _COMPLEMENT[_a] = _c
    _COMPLEMENT[_a + 32] = _c + 32
_COMPLEMENT.setflags(write=False)

_ONE_HOT_UNKNOWN = ("zeros", "quarter")
_TABLE_CACHE: dict[tuple[str, str], np.ndarray] = {}
_TABLE_LOCK = threading.Lock()


def resolve_one_hot_dtype(dtype) -> np.dtype:
    """Map ``"float32" | "float16" | "bfloat16" | "uint8" | "bool"`` (or a numpy dtype) to a dtype."""
    if isinstance(dtype, str) and dtype.lower() in ("bfloat16", "bf16"):
        import ml_dtypes  # a declared dependency; imported lazily to keep imports light

        return np.dtype(ml_dtypes.bfloat16)
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(
            f"unsupported one-hot dtype {dtype!r}; use float32, float16, bfloat16, uint8 or bool"
        ) from exc
    if dt.name == "bfloat16":
        return dt
    if dt not in (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64),
                  np.dtype(np.uint8), np.dtype(np.bool_)):
        raise ValueError(
            f"unsupported one-hot dtype {dt}; use float32, float16, bfloat16, uint8 or bool"
        )
    return dt


_PACKED_VIEW = {4: np.uint32, 8: np.uint64, 16: np.complex128}


def _one_hot_table(dtype: np.dtype, unknown: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(table (256, 4), the same rows packed as one 4/8/16-byte scalar each, or None).

    Gathering one packed scalar per base is 3-6x faster than gathering a 4-wide row."""
    key = (dtype.str if dtype.name != "bfloat16" else "bfloat16", unknown)
    entry = _TABLE_CACHE.get(key)
    if entry is None:
        base = np.zeros((256, 4), dtype=np.float32)
        known = ~_UNKNOWN
        base[np.flatnonzero(known), _CHANNEL[known]] = 1.0
        if unknown == "quarter":
            if dtype.kind in "bu":
                raise ValueError(
                    f"one_hot_unknown='quarter' (0.25 per channel) cannot be stored as {dtype}; "
                    "use a float dtype or one_hot_unknown='zeros'"
                )
            base[_UNKNOWN] = 0.25
        table = np.ascontiguousarray(base.astype(dtype))
        table.setflags(write=False)
        view = _PACKED_VIEW.get(table.itemsize * 4)
        packed = table.view(view).reshape(256) if view is not None else None
        entry = (table, packed)
        with _TABLE_LOCK:
            _TABLE_CACHE[key] = entry
    return entry


def as_codes(seqs) -> np.ndarray:
    """Return ``seqs`` as a ``uint8`` array of ASCII codes (no copy when it already is one).

    Accepts a ``uint8`` array, ``bytes``/``str`` (one sequence), a list of equal-length
    ``bytes``/``str``, a numpy ``S``/``U`` array of equal-length strings, or an integer array with
    values in 0..255.
    """
    if isinstance(seqs, np.ndarray) and seqs.dtype == np.uint8:
        return seqs
    if isinstance(seqs, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(seqs), dtype=np.uint8)
    if isinstance(seqs, str):
        return np.frombuffer(seqs.encode("latin-1"), dtype=np.uint8)
    if not isinstance(seqs, np.ndarray):
        if isinstance(seqs, (list, tuple)) and seqs and isinstance(seqs[0], (str, bytes)):
            rows = [s.encode("latin-1") if isinstance(s, str) else bytes(s) for s in seqs]
            lengths = {len(r) for r in rows}
            if len(lengths) != 1:
                raise ValueError(f"sequences must all have the same length, got lengths {sorted(lengths)[:5]}")
            return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), lengths.pop())
        seqs = np.asarray(seqs)
    if seqs.dtype.kind in "SU":
        if seqs.dtype.kind == "U":
            seqs = np.char.encode(seqs, "latin-1")
        width = seqs.dtype.itemsize
        flat = np.ascontiguousarray(seqs).view(np.uint8).reshape(seqs.shape + (width,))
        if seqs.ndim >= 1 and width > 1:  # an array of strings: one row per string
            lengths = np.char.str_len(seqs)
            if np.any(lengths != width):
                raise ValueError("sequences must all have the same length (no padding)")
            return flat
        return flat.reshape(seqs.shape) if width == 1 else flat
    if seqs.dtype.kind in "iub":
        if seqs.size and (seqs.min() < 0 or seqs.max() > 255):
            raise ValueError("sequence codes must lie in 0..255 (ASCII bytes)")
        return seqs.astype(np.uint8)
    raise TypeError(f"cannot interpret {type(seqs).__name__} of dtype {seqs.dtype} as sequence codes")


def one_hot(codes, dtype="float32", unknown: str = "zeros", xp=np):
    """One-hot encode ASCII codes ``(..., L)`` to ``(..., L, 4)`` with channels A, C, G, T.

    Lowercase (soft-masked) bases are encoded like uppercase. ``N``, IUPAC ambiguity codes and any
    other byte are all zeros (``unknown="zeros"``) or 0.25 in every channel (``unknown="quarter"``).
    ``dtype``: float32, float16, bfloat16, uint8 or bool. ``xp=cupy``: the codes are copied to the
    GPU and encoded there (one table lookup; bfloat16 comes as uint16 bit patterns, as CuPy has none).
    """
    if unknown not in _ONE_HOT_UNKNOWN:
        raise ValueError(f"unknown must be one of {_ONE_HOT_UNKNOWN}, got {unknown!r}")
    table, packed = _one_hot_table(resolve_one_hot_dtype(dtype), unknown)
    codes = as_codes(codes)
    if xp is not np:
        host_table = table.view(np.uint16) if table.dtype.name == "bfloat16" else table
        return xp.take(xp.asarray(host_table), xp.asarray(codes), axis=0)
    if packed is None:
        return np.take(table, codes, axis=0)
    return np.take(packed, codes).view(table.dtype).reshape(codes.shape + (4,))


def unknown_fraction(codes) -> np.ndarray | float:
    """Fraction of bases that are not A, C, G or T (case-insensitive) along the last axis."""
    codes = as_codes(codes)
    if codes.shape[-1] == 0:
        return np.zeros(codes.shape[:-1], dtype=np.float64)
    return np.count_nonzero(_UNKNOWN[codes], axis=-1) / codes.shape[-1]


def reverse_complement_codes(codes) -> np.ndarray:
    """Reverse complement along the last axis. Case is kept, ``N`` stays ``N``, IUPAC codes are
    complemented (R<->Y, K<->M, B<->V, D<->H; S, W unchanged); any other byte is kept as is."""
    codes = as_codes(codes)
    return np.ascontiguousarray(_COMPLEMENT[codes][..., ::-1])


# --------------------------------------------------------------------------------------------------
# chromosome consistency
# --------------------------------------------------------------------------------------------------


def _preview(names: Sequence[str], n: int = 5) -> str:
    names = list(names)
    shown = ", ".join(names[:n])
    return f"{len(names)} ({shown}{', ...' if len(names) > n else ''})"


def check_chromosomes(bigwig_chrom_names: Iterable[str], path, query_chroms: Iterable[str] | None = None
                      ) -> list[str]:
    """Check that a FASTA and the bigWig collection agree on chromosome names.

    ``path`` is a FASTA path, a :class:`ReferenceGenome` or a ``{name: size}`` mapping.
    ``query_chroms`` are the chromosomes that will be queried (default: all bigWig chromosomes).

    Raises ``ValueError`` listing the chromosomes missing on each side (the first few, with
    counts) when the FASTA and the bigWigs share none of the query chromosomes, or when a queried
    chromosome is absent from the FASTA (or from the bigWigs). Returns the shared chromosomes in
    bigWig order.
    """
    if isinstance(path, ReferenceGenome):
        fasta_names, label = list(path.chrom_sizes), path.path
    elif isinstance(path, Mapping):
        fasta_names, label = list(path), "<reference>"
    else:
        with ReferenceGenome(path) as genome:
            fasta_names, label = list(genome.chrom_sizes), genome.path
    bw_names = list(dict.fromkeys(bigwig_chrom_names))
    bw_set, fa_set = set(bw_names), set(fasta_names)
    only_bw = [c for c in bw_names if c not in fa_set]
    only_fa = [c for c in fasta_names if c not in bw_set]
    shared = [c for c in bw_names if c in fa_set]

    def _hint() -> str:
        from .assembly import name_matches
        parts = []
        bw_chr = sum(c.startswith("chr") for c in bw_names)
        fa_chr = sum(c.startswith("chr") for c in fasta_names)
        if (bw_chr > len(bw_names) // 2) != (fa_chr > len(fasta_names) // 2):
            parts.append("one side uses a 'chr' prefix and the other does not")
        matches = name_matches(only_bw, fasta_names)
        if matches:
            shown = ", ".join(f"{c} = {f}" for c, f in list(matches.items())[:8])
            more = f" and {len(matches) - 8} more" if len(matches) > 8 else ""
            parts.append(f"these names would match (bigWigs = FASTA): {shown}{more}")
        if not parts:
            return ""
        return (" (" + "; ".join(parts) + ". Set chromosome_aliases: auto, or a mapping {name in the FASTA: "
                "name in the bigWigs}, to use the FASTA as it is)")

    sides = (f"only in the bigWigs: {_preview(only_bw)}; only in the FASTA {label}: {_preview(only_fa)}")
    if query_chroms is None:
        if not shared:
            raise ValueError(f"the FASTA {label} and the bigWigs share no chromosome names; {sides}{_hint()}")
        return shared
    query = list(dict.fromkeys(query_chroms))
    q_no_fa = [c for c in query if c not in fa_set]
    q_no_bw = [c for c in query if c not in bw_set]
    if not any(c in fa_set and c in bw_set for c in query):
        raise ValueError(
            f"the FASTA {label} and the bigWigs share none of the {len(query)} queried chromosomes; "
            f"queried but missing from the FASTA: {_preview(q_no_fa)}; queried but missing from the "
            f"bigWigs: {_preview(q_no_bw)}; {sides}{_hint()}"
        )
    if q_no_fa or q_no_bw:
        parts = []
        if q_no_fa:
            parts.append(f"missing from the FASTA {label}: {_preview(q_no_fa)}")
        if q_no_bw:
            parts.append(f"missing from the bigWigs: {_preview(q_no_bw)}")
        raise ValueError("queried chromosomes " + "; ".join(parts) + _hint())
    return shared


# --------------------------------------------------------------------------------------------------
# ReferenceGenome
# --------------------------------------------------------------------------------------------------


class ReferenceGenome:
    """A FASTA reference (plain or bgzipped) with batch access and one-hot encoding.

    Parameters
    ----------
    path:
        FASTA file. Files ending in ``.gz``/``.bgz`` must be BGZF (``bgzip``) compressed and need
        Biopython (pyfaidx uses it). The ``.fai`` (and ``.gzi``) index is built when missing; when the
        FASTA's folder is read-only the index is built in the temporary directory.
    one_hot_unknown:
        ``"zeros"`` (default): N and IUPAC ambiguity codes encode as all zeros; ``"quarter"``: 0.25 in
        every channel.
    aliases:
        ``{name used by the loader: name in the FASTA}`` (say ``{"chr1": "1", "chrM": "MT"}`` for an
        Ensembl FASTA with UCSC-named bigWigs): the genome answers to the loader's names, and
        ``chrom_sizes`` uses them. See :func:`bwloader_core.assembly.resolve_aliases`.
    """

    def __init__(self, path, one_hot_unknown: str = "zeros", aliases: Mapping[str, str] | None = None):
        if one_hot_unknown not in _ONE_HOT_UNKNOWN:
            raise ValueError(f"one_hot_unknown must be one of {_ONE_HOT_UNKNOWN}, got {one_hot_unknown!r}")
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"FASTA file not found: {self.path}")
        self.one_hot_unknown = one_hot_unknown
        self._faidx = self._open_faidx()
        self._bgzf = bool(getattr(self._faidx, "_bgzf", False))
        self._index = {name: rec for name, rec in self._faidx.index.items()}
        self.aliases = {str(k): str(v) for k, v in (aliases or {}).items() if str(v) in self._index and k != v}
        from_file = {v: k for k, v in self.aliases.items()}
        self.chrom_sizes: dict[str, int] = {from_file.get(name, name): int(rec.rlen)
                                            for name, rec in self._index.items()}
        self._fd: int | None = None
        if not self._bgzf:
            self._fd = os.open(self.path, os.O_RDONLY)

    # -- opening --------------------------------------------------------------------------------
    def _open_faidx(self):
        import pyfaidx

        kwargs = dict(as_raw=True, sequence_always_upper=False, rebuild=True)
        try:
            try:
                return pyfaidx.Faidx(self.path, **kwargs)
            except PermissionError:
                # read-only folder: keep the index files in the temporary directory instead
                tag = hashlib.sha1(os.path.abspath(self.path).encode()).hexdigest()[:16]
                folder = os.path.join(tempfile.gettempdir(), "bwloader_fai")
                os.makedirs(folder, exist_ok=True)
                base = os.path.join(folder, f"{tag}_{os.path.basename(self.path)}")
                return pyfaidx.Faidx(self.path, indexname=base + ".fai", gzi_indexname=base + ".gzi", **kwargs)
        except ImportError as exc:
            raise ImportError(
                f"reading the bgzipped FASTA {self.path} needs Biopython>=1.73 (pip install biopython), "
                "or decompress it"
            ) from exc
        except pyfaidx.UnsupportedCompressionFormat as exc:
            raise ValueError(
                f"{self.path}: compressed FASTA must be BGZF (bgzip), not plain gzip: "
                f"run `gunzip {self.path} && bgzip {os.path.splitext(self.path)[0]}`"
            ) from exc
        except pyfaidx.FastaIndexingError as exc:
            raise ValueError(f"{self.path}: cannot index FASTA: {exc}") from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._faidx is not None:
            self._faidx.close()
            self._faidx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # release the file descriptor if the user forgot close()
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        except Exception:
            pass

    def __getstate__(self):  # picklable for worker processes: reopened on the other side
        return {"path": self.path, "one_hot_unknown": self.one_hot_unknown, "aliases": self.aliases}

    def __setstate__(self, state):
        self.__init__(state["path"], state["one_hot_unknown"], state.get("aliases"))

    def __repr__(self) -> str:
        return f"ReferenceGenome({self.path!r}, {len(self.chrom_sizes)} sequences)"

    def __contains__(self, chrom) -> bool:
        return chrom in self.chrom_sizes

    # -- fetching -------------------------------------------------------------------------------
    def _read(self, chrom: str, start: int, end: int) -> bytes:
        """Bytes of ``chrom[start:end]`` with ``0 <= start < end <= size``."""
        if self._faidx is None:
            raise ValueError(f"ReferenceGenome({self.path!r}) is closed")
        chrom = self.aliases.get(chrom, chrom)
        if self._bgzf:
            return self._faidx.from_file(chrom, start + 1, end).encode("latin-1")
        rec = self._index[chrom]
        lenc, lenb = int(rec.lenc), int(rec.lenb)
        if lenc <= 0:
            return b""
        b0 = int(rec.offset) + (start // lenc) * lenb + start % lenc
        last = end - 1
        b1 = int(rec.offset) + (last // lenc) * lenb + last % lenc + 1
        raw = os.pread(self._fd, b1 - b0, b0)
        if lenb != lenc:
            raw = raw.translate(None, b"\r\n")
        if len(raw) != end - start:
            raise ValueError(
                f"{self.path}: read {len(raw)} bases for {chrom}:{start}-{end}, expected {end - start}; "
                "the FASTA lines may have uneven lengths or the .fai index is stale"
            )
        return raw

    def _check_chrom(self, chrom: str) -> int:
        try:
            return self.chrom_sizes[chrom]
        except KeyError:
            raise KeyError(
                f"chromosome {chrom!r} is not in the FASTA {self.path} "
                f"(it has {_preview(list(self.chrom_sizes))})"
            ) from None

    def fetch(self, chrom: str, start: int, end: int) -> bytes:
        """Bases ``[start, end)`` of ``chrom`` as bytes (case kept), padded with ``N`` outside
        the chromosome (``start < 0`` or ``end > size``)."""
        start, end = int(start), int(end)
        if end < start:
            raise ValueError(f"end ({end}) < start ({start}) for {chrom}")
        size = self._check_chrom(chrom)
        lo, hi = max(start, 0), min(end, size)
        if hi <= lo:
            return b"N" * (end - start)
        return b"N" * (lo - start) + self._read(chrom, lo, hi) + b"N" * (end - hi)

    def fetch_batch(self, chroms, starts, ends) -> np.ndarray:
        """ASCII codes ``(batch, L)`` (``uint8``) of equal-length intervals, ``N``-padded outside
        the chromosome. One read per interval; no per-base Python work."""
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        ends = np.asarray(ends, dtype=np.int64).reshape(-1)
        chroms = np.asarray(chroms).reshape(-1)
        if not (len(chroms) == len(starts) == len(ends)):
            raise ValueError(
                f"chroms, starts and ends must have the same length, got {len(chroms)}, {len(starts)}, {len(ends)}"
            )
        if len(starts) == 0:
            return np.zeros((0, 0), dtype=np.uint8)
        lengths = ends - starts
        if np.any(lengths != lengths[0]) or lengths[0] < 0:
            raise ValueError("fetch_batch needs intervals of one common, non-negative length")
        length = int(lengths[0])
        out = np.full((len(starts), length), _N, dtype=np.uint8)
        for i in range(len(starts)):
            chrom = str(chroms[i])
            size = self._check_chrom(chrom)
            s, e = int(starts[i]), int(ends[i])
            lo, hi = max(s, 0), min(e, size)
            if hi > lo:
                out[i, lo - s:hi - s] = np.frombuffer(self._read(chrom, lo, hi), dtype=np.uint8)
        return out

    # -- encoding -------------------------------------------------------------------------------
    def one_hot(self, codes, dtype="float32", xp=np):
        """One-hot ``(batch, L, 4)`` (A, C, G, T) using this genome's ``one_hot_unknown`` option;
        with ``xp=cupy`` the encoding happens on the GPU (bfloat16 then as uint16 bit patterns)."""
        return one_hot(codes, dtype=dtype, unknown=self.one_hot_unknown, xp=xp)

    def fetch_one_hot(self, chroms, starts, ends, dtype="float32", reverse_complement=None) -> np.ndarray:
        """``fetch_batch`` + optional per-sample reverse complement + ``one_hot``."""
        codes = self.fetch_batch(chroms, starts, ends)
        if reverse_complement is not None:
            rc = np.asarray(reverse_complement, dtype=bool).reshape(-1)
            if rc.any():
                codes[rc] = reverse_complement_codes(codes[rc])
        return self.one_hot(codes, dtype=dtype)

    @staticmethod
    def unknown_fraction(codes):
        return unknown_fraction(codes)

    @staticmethod
    def reverse_complement_codes(codes):
        return reverse_complement_codes(codes)

    def check_chromosomes(self, bigwig_chrom_names, query_chroms=None) -> list[str]:
        return check_chromosomes(bigwig_chrom_names, self, query_chroms)

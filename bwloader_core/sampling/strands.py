"""Strand pairs: tracks of the two strands of one stranded assay (RNA plus/minus, PRO-cap, ...).

When a sample is reverse-complemented its values are reversed along the length *and* each pair's
columns are swapped, so that the plus-strand column always holds the signal of the strand the
(reverse-complemented) sequence reads along, as Basenji/Borzoi's ``strand_pair`` does.

Track sampling keeps pairs together: with ``tracks=k`` the k tracks of a batch are drawn uniformly
among the selections of k tracks that contain both tracks of every pair they touch
(:class:`PairedRandomTracks`); a fixed or per-batch list that holds one track of a pair without its
partner is refused (up front where the list is known, else at that batch).
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .samplers import TrackSampler, _check_int

__all__ = ["StrandPairs", "PairedRandomTracks", "normalize_strand_pairs"]


def normalize_strand_pairs(spec) -> list[tuple[str, str]]:
    """The structure of a ``strand_pairs`` spec, without the track names: a mapping ``{a: b}`` or
    a list of ``[a, b]`` pairs -> a list of (a, b) name tuples. None -> []."""
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, (list, tuple)):
        items = []
        for i, pair in enumerate(spec):
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise ValueError(f"strand_pairs[{i}]: a pair is two track names like [RNA_plus, RNA_minus], "
                                 f"got {pair!r}")
            items.append(tuple(pair))
    else:
        raise ValueError("strand_pairs must be a list of [plus, minus] track-name pairs or a mapping "
                         f"plus -> minus, got {type(spec).__name__}")
    for a, b in items:
        for name in (a, b):
            if not isinstance(name, str):
                raise ValueError(f"strand_pairs: a track is named by a string, got {name!r} in pair "
                                 f"[{a!r}, {b!r}]")
        if a == b:
            raise ValueError(f"strand_pairs: track {a!r} is paired with itself; a strand pair names two "
                             "different tracks (leave unstranded tracks out)")
    return [(str(a), str(b)) for a, b in items]


def _unknown(name: str, track_names) -> str:
    close = difflib.get_close_matches(name, list(track_names), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(list(track_names)[:8]) + (", ..." if len(track_names) > 8 else "")
    return f"strand_pairs: unknown track {name!r} (tracks: {shown}){hint}"


@dataclass(frozen=True, eq=False)
class StrandPairs:
    """Validated strand pairs over a collection's tracks; ``partner[t]`` is the track paired with
    track ``t`` (``t`` itself when unpaired)."""

    track_names: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    partner: np.ndarray   # int64 (n_tracks,)

    @classmethod
    def parse(cls, spec, track_names: Sequence[str]) -> "StrandPairs | None":
        """None when ``spec`` names no pair; errors name the unknown track (with the nearest name),
        a self-pair, or a track paired twice with different partners."""
        pairs = normalize_strand_pairs(spec)
        if not pairs:
            return None
        names = tuple(str(t) for t in track_names)
        index = {n: i for i, n in enumerate(names)}
        partner = np.arange(len(names), dtype=np.int64)
        kept = []
        for a, b in pairs:
            for name in (a, b):
                if name not in index:
                    raise ValueError(_unknown(name, names))
            ia, ib = index[a], index[b]
            for i, j in ((ia, ib), (ib, ia)):
                if partner[i] != i and partner[i] != j:
                    raise ValueError(f"strand_pairs: track {names[i]!r} is paired twice, with "
                                     f"{names[partner[i]]!r} and {names[j]!r}")
            if partner[ia] == ib:
                continue           # the same pair again (e.g. both directions of a mapping)
            partner[ia], partner[ib] = ib, ia
            kept.append((a, b))
        partner.setflags(write=False)
        return cls(names, tuple(kept), partner)

    @property
    def paired(self) -> np.ndarray:
        """Boolean mask of tracks that belong to a pair."""
        return self.partner != np.arange(len(self.partner))

    def columns(self, track_indices, where: str = "tracks") -> np.ndarray:
        """For a batch reading ``track_indices`` (in that column order): the column of each column's
        partner (itself when unpaired). Refuses a selection holding one track of a pair only."""
        idx = np.asarray(track_indices, dtype=np.int64)
        col_of = np.full(len(self.partner), -1, dtype=np.int64)
        col_of[idx] = np.arange(len(idx))
        cols = col_of[self.partner[idx]]
        missing = np.flatnonzero(cols < 0)
        if missing.size:
            t = int(idx[missing[0]])
            raise ValueError(
                f"{where}: track {self.track_names[t]!r} is strand-paired with "
                f"{self.track_names[self.partner[t]]!r}, which the selection leaves out; select both "
                f"tracks of a strand pair (or remove the pair from strand_pairs)")
        return cols


class PairedRandomTracks(TrackSampler):
    """``k`` tracks per batch with strand pairs kept together, uniformly over such selections:
    the number of pairs m is drawn with weight C(P, m) * C(S, k - 2m) (P pairs, S unpaired tracks),
    then m pairs and k - 2m unpaired tracks uniformly. Returned in increasing order."""

    def __init__(self, track_names, k: int, pairs: StrandPairs):
        super().__init__(track_names)
        self.k = _check_int(k, "tracks (k)", 1)
        if self.k > self.n_tracks:
            raise ValueError(f"cannot draw k={self.k} tracks per batch from {self.n_tracks} tracks")
        lo = np.flatnonzero(pairs.partner > np.arange(len(pairs.partner)))
        self._pairs = np.stack([lo, pairs.partner[lo]], axis=1)              # (P, 2)
        self._singles = np.flatnonzero(~pairs.paired)                        # (S,)
        P, S, k = len(self._pairs), len(self._singles), self.k
        ms = [m for m in range(0, min(P, k // 2) + 1) if 0 <= k - 2 * m <= S]
        if not ms:
            raise ValueError(
                f"tracks={k}: cannot draw {k} tracks per batch with strand pairs kept together "
                f"({P} pair(s) and no unpaired track): choose an even k")
        logw = np.array([_log_comb(P, m) + _log_comb(S, k - 2 * m) for m in ms])
        w = np.exp(logw - logw.max())
        self._ms = np.asarray(ms, dtype=np.int64)
        self._p = w / w.sum()
        self.n_per_batch = k

    def __call__(self, rng, stream_index):
        m = int(self._ms[rng.choice(len(self._ms), p=self._p)]) if len(self._ms) > 1 else int(self._ms[0])
        parts = []
        if m:
            parts.append(self._pairs[rng.choice(len(self._pairs), size=m, replace=False)].reshape(-1))
        if self.k - 2 * m:
            parts.append(self._singles[rng.choice(len(self._singles), size=self.k - 2 * m, replace=False)])
        return np.sort(np.concatenate(parts)).astype(np.int64)


def _log_comb(n: int, r: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)

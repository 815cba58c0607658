"""Weighted region mixtures: several named region sources, each batch drawn from them in set
proportions (peaks and genome-wide background at a fixed ratio, as BPNet/ChromBPNet train).

A mixture is a mapping ``name -> source`` (or a list of :class:`RegionSource`); a source is a
mapping ``{regions: <BED path | list of [chrom, start, end] | all>, weight: w, exclude: <...>}``
(``weight`` defaults to 1, ``exclude`` to nothing) or just its regions (weight 1).

Per-batch counts: source ``i`` gets ``floor(n * f_i)`` or ``ceil(n * f_i)`` samples (``f_i`` its
share of the total weight), the leftover samples given to sources with probability equal to the
fractional parts by systematic sampling. Each count's expectation is exactly ``n * f_i`` and it
never strays more than one sample from it (a 0.5/0.5 mix of an even batch is exact every batch).
The draws come from the batch's generator ``default_rng([seed, epoch, batch])``, and the samples
of the sources are shuffled within the batch.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["RegionSource", "parse_region_mixture", "is_region_mixture", "MixtureCounts"]

_SOURCE_KEYS = ("regions", "weight", "exclude")


@dataclass(frozen=True, eq=False)
class RegionSource:
    """One named source of a mixture: ``regions`` (anything ``load_regions`` accepts), its
    ``weight`` (relative; >= 0) and its own ``exclude`` (on top of the generator's)."""

    name: str
    regions: object = None
    weight: float = 1.0
    exclude: object = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"regions: a source name must be a non-empty string, got {self.name!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(w)) or float(w) < 0:
            raise ValueError(f"regions: source {self.name!r}: weight must be a finite number >= 0, got {w!r}")
        object.__setattr__(self, "weight", float(w))


def is_region_mixture(spec) -> bool:
    """A mapping of named sources, or a list of RegionSource (the older forms are neither)."""
    if isinstance(spec, Mapping):
        return True
    return isinstance(spec, (list, tuple)) and len(spec) > 0 and all(isinstance(s, RegionSource) for s in spec)


def parse_region_mixture(spec) -> tuple[RegionSource, ...]:
    """A mixture spec -> its sources, in order. Errors name the source and the bad key or value."""
    if isinstance(spec, (list, tuple)):
        sources = tuple(spec)
    elif isinstance(spec, Mapping):
        sources = []
        for name, value in spec.items():
            if not isinstance(name, str):
                raise ValueError(f"regions: a source name must be a string, got {name!r}")
            if isinstance(value, Mapping):
                for key in value:
                    if key not in _SOURCE_KEYS:
                        close = difflib.get_close_matches(str(key), _SOURCE_KEYS, n=1)
                        hint = f"; did you mean {close[0]!r}?" if close else ""
                        raise ValueError(f"regions: source {name!r} has an unknown key {key!r} "
                                         f"(keys: {', '.join(_SOURCE_KEYS)}){hint}")
                sources.append(RegionSource(name, value.get("regions"), value.get("weight", 1.0),
                                            value.get("exclude")))
            else:
                sources.append(RegionSource(name, value))
        sources = tuple(sources)
    else:
        raise ValueError(f"regions: a mixture is a mapping of named sources, got {type(spec).__name__}")
    if not sources:
        raise ValueError("regions: the mixture names no source")
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"regions: source name(s) used twice: {', '.join(dup)}")
    if sum(s.weight for s in sources) <= 0:
        raise ValueError("regions: the source weights add up to 0; give at least one a weight > 0")
    return sources


class MixtureCounts:
    """Samples per source in a batch of ``n``: floor(n * f_i) plus one for a systematic sample of
    sources with probability frac(n * f_i) (computed in exact rational arithmetic)."""

    def __init__(self, weights, n: int):
        w = [Fraction(float(x)) for x in weights]
        total = sum(w)
        exact = [x * n / total for x in w]
        self.fractions = np.array([float(x / total) for x in w])
        self.base = np.array([math.floor(e) for e in exact], dtype=np.int64)
        frac = [e - math.floor(e) for e in exact]
        self.leftover = int(n - self.base.sum())
        cum = np.cumsum([float(f) for f in frac])
        if len(cum):
            cum[-1] = self.leftover   # the fractional parts add up to the leftover exactly
        self._cum = cum
        self.n = int(n)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        counts = self.base.copy()
        if self.leftover:
            points = rng.random() + np.arange(self.leftover)
            counts[np.searchsorted(self._cum, points, side="right")] += 1
        return counts

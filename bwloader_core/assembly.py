"""Assembly checks: do the bigWigs and the FASTA describe the same genome?

Files from two assemblies (hg19 and hg38, a toy genome and real tracks) share chromosome names but
not sizes, and nothing fails: sequences past the FASTA's end are N, values past a bigWig's end are
the default. `check_assembly` compares the sizes of every chromosome that will be sampled, between
the bigWigs and against the FASTA, and either refuses the mismatch (naming each chromosome, both
sizes and the files, with a guess of the assemblies) or, when allowed, returns the extent every
source covers. `name_matches` says which chromosome names differ only by style (`1` vs `chr1`,
`MT` vs `chrM`), and `resolve_aliases` turns `chromosome_aliases` into a name map.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["AssemblyError", "AssemblyReport", "SizeMismatch", "check_assembly", "guess_assembly",
           "name_matches", "resolve_aliases", "canonical_name", "sampled_chromosomes"]

# sizes of a few chromosomes in common assemblies (UCSC), to name what a file was built on
_KNOWN_SIZES = {
    "hg19 (GRCh37)": {"chr1": 249_250_621, "chr21": 48_129_895, "chrX": 155_270_560, "chrM": 16_571},
    "hg38 (GRCh38)": {"chr1": 248_956_422, "chr21": 46_709_983, "chrX": 156_040_895, "chrM": 16_569},
    "mm10 (GRCm38)": {"chr1": 195_471_971, "chrX": 171_031_299, "chrM": 16_299},
    "mm39 (GRCm39)": {"chr1": 195_154_279, "chrX": 169_476_592, "chrM": 16_299},
}


class AssemblyError(ValueError):
    """The bigWigs and/or the FASTA disagree on the size of a chromosome that will be sampled."""


@dataclass(frozen=True)
class SizeMismatch:
    """One chromosome whose size differs between sources: `sizes` maps each size to the files
    (bigWig paths, or the FASTA) that give it."""
    chrom: str
    sizes: tuple[tuple[int, tuple[str, ...]], ...]

    @property
    def common(self) -> int:
        """The extent every source has: the smallest size."""
        return min(s for s, _ in self.sizes)

    def describe(self, max_files: int = 3) -> str:
        parts = []
        for size, files in self.sizes:
            shown = ", ".join(files[:max_files]) + (f" and {len(files) - max_files} more" if len(files) > max_files else "")
            guess = guess_assembly(self.chrom, size)
            parts.append(f"{size:,} bp in {shown}" + (f" (as in {guess})" if guess else ""))
        return f"{self.chrom}: " + " vs ".join(parts)


@dataclass(frozen=True)
class AssemblyReport:
    """What `check_assembly` found. `chrom_sizes`: the extent to sample, per chromosome (the
    common extent of a mismatched chromosome when allowed); `mismatches`: every size conflict on a
    sampled chromosome; `unsampled_mismatches`: conflicts on chromosomes that are not sampled."""
    chrom_sizes: dict
    mismatches: tuple[SizeMismatch, ...] = ()
    unsampled_mismatches: tuple[SizeMismatch, ...] = ()
    sampled_bp: int = 0
    kept_bp: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        """One line for a log or a dashboard: what was trimmed and how much genome is left."""
        if self.ok:
            return ""
        lost = self.sampled_bp - self.kept_bp
        return (f"allow_size_mismatch: {len(self.mismatches)} chromosome(s) differ in size between sources "
                f"({', '.join(m.chrom for m in self.mismatches[:5])}{', ...' if len(self.mismatches) > 5 else ''}); "
                f"sampling only where every source has coordinates: {self.kept_bp:,} of {self.sampled_bp:,} bp "
                f"({self.kept_bp / max(self.sampled_bp, 1):.1%}; {lost:,} bp left out)")


def canonical_name(name: str) -> str:
    """A chromosome name without its style: 'chr1' and '1' -> '1'; 'chrM', 'MT', 'M' -> 'M'."""
    n = str(name)
    low = n.lower()
    if low.startswith("chr") and len(n) > 3:
        n = n[3:]
    if n.upper() in ("M", "MT"):
        return "M"
    return n


def guess_assembly(chrom: str, size: int) -> str | None:
    """The common assembly whose `chrom` has exactly `size` bases, if one of those we know."""
    key = "chr" + canonical_name(chrom) if canonical_name(chrom) != "M" else "chrM"
    hits = [name for name, sizes in _KNOWN_SIZES.items() if sizes.get(key) == int(size)]
    return " or ".join(hits) if hits else None


def name_matches(missing: Iterable[str], available: Iterable[str]) -> dict[str, str]:
    """For names of one side that the other side lacks: the other side's name that differs only by
    style ('X' -> 'chrX', 'MT' -> 'chrM'), where exactly one does."""
    by_canon: dict[str, list[str]] = {}
    for a in available:
        by_canon.setdefault(canonical_name(a), []).append(a)
    out = {}
    for m in missing:
        cands = [c for c in by_canon.get(canonical_name(m), []) if c != m]
        if len(cands) == 1:
            out[m] = cands[0]
    return out


def resolve_aliases(aliases, file_names: Iterable[str], canonical_names: Iterable[str]) -> dict[str, str]:
    """{canonical name (the bigWigs'): name in the file} from `chromosome_aliases`:

    - None: no renaming;
    - "auto": every file name that differs from a canonical name only by style ('1' / 'chr1',
      'MT' / 'chrM');
    - a mapping {name in the file: canonical name} (for example {"1": "chr1", "MT": "chrM"}).
    """
    if aliases is None:
        return {}
    file_names = list(file_names)
    canonical_names = list(canonical_names)
    if isinstance(aliases, str):
        if aliases != "auto":
            raise ValueError(f"chromosome_aliases must be None, 'auto' or a mapping, got {aliases!r}")
        fset = set(file_names)
        missing = [c for c in canonical_names if c not in fset]
        return {canon: fname for canon, fname in name_matches(missing, file_names).items()}
    if not isinstance(aliases, Mapping):
        raise TypeError(f"chromosome_aliases must be None, 'auto' or a mapping, got {type(aliases).__name__}")
    out = {}
    for fname, canon in aliases.items():
        if str(canon) in out and out[str(canon)] != str(fname):
            raise ValueError(f"chromosome_aliases: {out[str(canon)]!r} and {fname!r} both map to {canon!r}")
        out[str(canon)] = str(fname)
    return out


def check_assembly(bigwig_sizes: Mapping[str, Mapping[str, int]], sampled: Iterable[str],
                   fasta_sizes: Mapping[str, int] | None = None, fasta_label: str = "the FASTA",
                   allow_mismatch: bool = False) -> AssemblyReport:
    """Compare chromosome sizes between the bigWigs (`{path: {chrom: size}}`) and against the
    FASTA (`{chrom: size}`, already in the bigWigs' names) for the `sampled` chromosomes.

    Raises AssemblyError on a mismatch unless `allow_mismatch`; then `chrom_sizes` holds the common
    extent (smallest size) of each sampled chromosome and the report says how much is left.
    Chromosomes missing from some files are not mismatches (those tracks read the default there).
    """
    sampled = list(dict.fromkeys(sampled))
    sampled_set = set(sampled)
    per_chrom: dict[str, dict[int, list[str]]] = {}
    for path, sizes in bigwig_sizes.items():
        for c, n in sizes.items():
            per_chrom.setdefault(c, {}).setdefault(int(n), []).append(str(path))
    if fasta_sizes is not None:
        for c in per_chrom:
            if c in fasta_sizes:
                per_chrom[c].setdefault(int(fasta_sizes[c]), []).append(str(fasta_label))
    bw_max = {c: max(sizes) for c, sizes in per_chrom.items()}
    mismatches, other = [], []
    for c, sizes in per_chrom.items():
        if len(sizes) < 2:
            continue
        m = SizeMismatch(c, tuple(sorted(((s, tuple(f)) for s, f in sizes.items()), key=lambda x: -x[0])))
        (mismatches if c in sampled_set else other).append(m)
    chrom_sizes = {c: bw_max[c] for c in bw_max}
    sampled_bp = sum(bw_max.get(c, 0) for c in sampled)
    if mismatches and not allow_mismatch:
        lines = "\n  ".join(m.describe() for m in mismatches[:10])
        more = f"\n  ... and {len(mismatches) - 10} more" if len(mismatches) > 10 else ""
        raise AssemblyError(
            f"chromosome sizes differ between the files, so they come from different assemblies "
            f"(for example hg19 vs hg38, or a toy genome with real tracks):\n  {lines}{more}\n"
            "Use files of one assembly, or set allow_size_mismatch: true to sample only where every "
            "file has coordinates.")
    for m in mismatches:
        chrom_sizes[m.chrom] = m.common
    kept_bp = sum(chrom_sizes.get(c, 0) for c in sampled)
    return AssemblyReport(chrom_sizes=chrom_sizes, mismatches=tuple(mismatches), unsampled_mismatches=tuple(other),
                          sampled_bp=sampled_bp, kept_bp=kept_bp)


def sampled_chromosomes(regions, exclude, chrom_sizes: Mapping[str, int]) -> list[str]:
    """The chromosomes windows can come from: those of `regions` (a BED path, a list, None for all,
    or a weighted mixture: every source of weight > 0, each minus its own exclude) minus `exclude`.
    Chromosomes the files do not know are left out (the sampler itself reports them)."""
    from .sampling import load_regions, subtract
    from .sampling.mixture import is_region_mixture, parse_region_mixture

    def chroms(spec, own_exclude=None):
        regs = load_regions(spec, chrom_sizes, unknown_chroms="drop")
        for ex in (own_exclude, exclude):
            if ex is not None:
                regs = subtract(regs, ex)
        return regs.chroms.tolist()

    if regions is not None and is_region_mixture(regions):
        out = []
        for src in parse_region_mixture(regions):
            if src.weight > 0:
                out += chroms(src.regions, src.exclude)
    else:
        out = chroms(regions)
    return list(dict.fromkeys(out))

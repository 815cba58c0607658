"""LoaderConfig: every loader knob with its type, bounds and doc; YAML round trip; build()."""
from __future__ import annotations

import difflib
import math
import os
import warnings
from pathlib import Path

import param
import yaml

FORMAT_VERSION = 1


class LoaderConfigError(ValueError):
    """A config (YAML or keywords) names an unknown key or gives a bad value."""


class AssemblyWarning(UserWarning):
    """The files disagree on chromosome sizes and allow_size_mismatch trimmed what is sampled."""


class LoaderConfig(param.Parameterized):
    """Everything that decides what a training run reads. `to_yaml()` writes only what differs
    from the defaults; `from_yaml()` reads it back (safe loading, unknown keys rejected).
    `build()` opens the files, checks them against each other and returns a BigWigDataset."""

    # -- files --------------------------------------------------------------------------------------
    bigwig_paths = param.List(default=[], item_type=str, doc=(
        "bigWig files, one track each, or one folder (every *.bw / *.bigWig in it, sorted by name)"))
    track_names = param.List(default=None, item_type=str, allow_None=True, doc=(
        "names of the tracks, one per file (default: the file names without suffix)"))
    reference_genome = param.String(default=None, allow_None=True, doc=(
        "FASTA (plain or bgzipped, with its .fai) whose one-hot sequences come with each batch; "
        "none: values only"))
    # -- where windows come from ---------------------------------------------------------------------
    regions = param.Parameter(default=None, doc=(
        "where window centres are drawn: a BED path, a list of [chrom, start, end], none for every "
        "chromosome (whole), or a weighted mixture {name: {regions, weight, exclude}} (each batch drawn "
        "from the sources in those proportions)"))
    exclude = param.Parameter(default=None, doc=(
        "regions never sampled (a blacklist): a BED path or a list of [chrom, start, end]"))
    sequence_length = param.Integer(default=1000, bounds=(1, None), doc=(
        "input window length in bases: the length of each sample's one-hot sequence"))
    center_bin_to_predict = param.Integer(default=None, allow_None=True, bounds=(1, None), doc=(
        "length in bases of the centred crop whose values are returned (a multiple of window_size); "
        "none: the whole window"))
    window_size = param.Integer(default=1, bounds=(1, None), doc=(
        "bases per output bin: values have (crop length // window_size) bins per sample"))
    reduce = param.Selector(default="mean", objects=["mean", "max", "min", "sum"], doc=(
        "how the bases of a bin make its value (bases without data count as default_value)"))
    batch_size = param.Integer(default=32, bounds=(1, None), doc="samples per batch")
    batches_per_epoch = param.Integer(default=None, allow_None=True, bounds=(1, None), doc=(
        "batches in one epoch over all ranks; none: total region length // sequence_length // batch_size"))
    seed = param.Integer(default=0, bounds=(0, None), doc=(
        "random seed: the same seed and epoch give the same batches on any machine"))
    jitter = param.Integer(default=0, bounds=(0, None), doc=(
        "shift each window by a random number of bases in [-jitter, +jitter] (augmentation; windows "
        "stay inside their chromosome)"))
    reverse_complement = param.Boolean(default=False, doc=(
        "augmentation: half the samples (at random) come reverse-complemented: values reversed along "
        "the length, sequences reverse-complemented"))
    tracks = param.Parameter(default=None, doc=(
        "tracks per batch: none (all), an integer k (k random tracks per batch) or a list of track names"))
    max_unknown_fraction = param.Number(default=0.5, allow_None=True, bounds=(0.0, 1.0), doc=(
        "with a reference_genome: windows with a larger fraction of unknown bases (N and other "
        "non-ACGT) are redrawn. The default 0.5 refuses windows that are mostly N (assembly gaps, "
        "sequence past the end of a FASTA); 0 allows no N; none keeps every window. Ignored without "
        "a reference_genome"))
    # -- output ----------------------------------------------------------------------------------------
    dtype = param.Selector(default="float32", objects=["float32", "float16", "bfloat16"], doc=(
        "dtype of values and sequences (float16 / bfloat16: the float32 value rounded once)"))
    default_value = param.Number(default=0.0, doc=(
        "value where a track has no data (uncovered bases, chromosomes a file lacks); .nan allowed"))
    scaling = param.Parameter(default=None, doc=(
        "per-track factors applied to covered values (never to default_value): a list, one per track, "
        "or a mapping track name -> factor"))
    one_hot_unknown = param.Selector(default="zeros", objects=["zeros", "quarter"], doc=(
        "one-hot of N and IUPAC codes: all zeros, or 0.25 in each channel"))
    # -- performance -----------------------------------------------------------------------------------
    num_workers = param.Integer(default=2, bounds=(1, 256), doc=(
        "loader threads (not processes) in each process, each reading whole batches. Under a PyTorch "
        "DataLoader with num_workers=k processes, each process runs this many threads"))
    threads_per_worker = param.Integer(default=None, allow_None=True, bounds=(1, 256), doc=(
        "inflate threads per loader thread; none: CPUs / num_workers (with DataLoader processes, set "
        "it so that processes x num_workers x threads_per_worker is about the CPU count)"))
    queue_size = param.Integer(default=4, bounds=(1, 1024), doc=(
        "batches read ahead (the length of the bounded queues)"))
    cache_bytes = param.Integer(default=0, bounds=(0, None), doc=(
        "bytes of inflated blocks kept across batches and epochs (helps repeated epochs over fixed "
        "regions); 0: no cache"))
    backend = param.Selector(default="cpu", objects=["cpu", "cuda", "auto"], doc=(
        "where batches are made: 'cpu', 'cuda' (CuPy arrays on the GPU; nvCOMP inflates when "
        "installed) or 'auto' (cuda when a GPU is usable, else cpu)"))
    # -- checks across files (assembly) ---------------------------------------------------------------
    allow_size_mismatch = param.Boolean(default=False, doc=(
        "when files disagree on a sampled chromosome's size (two assemblies, e.g. hg19 vs hg38), "
        "sample only where every file has coordinates (and say how much genome is left) instead of "
        "refusing to build"))
    chromosome_aliases = param.Parameter(default=None, doc=(
        "chromosome names of the FASTA that differ from the bigWigs': 'auto' (1 = chr1, X = chrX, "
        "MT = chrM, ...) or a mapping {name in the FASTA: name in the bigWigs}; none: names must match"))

    # -- training targets: stranded tracks and value transforms --------------------------------------
    strand_pairs = param.Parameter(default=None, doc="stranded tracks: [[plus, minus], ...] or {plus: minus}; a reverse-complemented sample swaps each pair's columns")
    value_transforms = param.List(default=[], doc="ordered steps on the values after windowing and scaling: clip, soft_clip, power, log1p (e.g. [{step: soft_clip, threshold: 384}])")

    # -- YAML round trip --------------------------------------------------------------------------
    @classmethod
    def _knobs(cls):
        return [n for n in cls.param if n != "name"]

    def to_dict(self) -> dict:
        """Non-default values only, plus the format version."""
        out = {"format_version": FORMAT_VERSION}
        for name in self._knobs():
            value, default = _plain(getattr(self, name)), self.param[name].default
            if _same(value, default):
                continue
            out[name] = value
        return out

    def to_yaml(self, path=None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, spec: dict, source: str = "config") -> "LoaderConfig":
        if not isinstance(spec, dict):
            raise LoaderConfigError(f"{source}: expected a mapping of settings, got {type(spec).__name__}")
        spec = dict(spec)
        version = spec.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise LoaderConfigError(f"{source}: format_version {version!r} is not supported (this bwloader reads {FORMAT_VERSION})")
        knobs = cls._knobs()
        for key in spec:
            if key not in knobs:
                close = difflib.get_close_matches(str(key), knobs, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise LoaderConfigError(f"{source}: unknown key {key!r}{hint}")
        cfg = cls()
        for key, value in spec.items():
            if isinstance(value, bool) and isinstance(cls.param[key], (param.Integer, param.Number)) \
                    and not isinstance(cls.param[key], param.Boolean):
                raise LoaderConfigError(f"{source}: bad value for {key!r}: expected a number, got {value!r}")
            try:
                setattr(cfg, key, value)
            except (ValueError, TypeError) as exc:
                raise LoaderConfigError(f"{source}: bad value for {key!r}: {exc}") from None
        cfg.validate(source)
        return cfg

    @classmethod
    def from_yaml(cls, path_or_text) -> "LoaderConfig":
        """Read a YAML file (or YAML text) written by `to_yaml`."""
        source = "config"
        text = path_or_text
        if isinstance(path_or_text, os.PathLike) or _looks_like_path(path_or_text):
            source = os.fspath(path_or_text)
            try:
                text = Path(source).read_text()
            except OSError as exc:
                raise LoaderConfigError(f"{source}: cannot read: {exc.strerror}") from None
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LoaderConfigError(f"{source}: not valid YAML: {exc}") from None
        return cls.from_dict(spec if spec is not None else {}, source)

    # -- checks across knobs ----------------------------------------------------------------------
    def validate(self, source: str = "config"):
        """Checks that need several knobs at once (each knob checks its own type and bounds)."""
        def fail(msg):
            raise LoaderConfigError(f"{source}: {msg}")
        if self.center_bin_to_predict is not None:
            if self.center_bin_to_predict > self.sequence_length:
                fail(f"center_bin_to_predict ({self.center_bin_to_predict}) is longer than "
                     f"sequence_length ({self.sequence_length})")
            if self.center_bin_to_predict % self.window_size:
                fail(f"center_bin_to_predict ({self.center_bin_to_predict}) must be a multiple "
                     f"of window_size ({self.window_size})")
        elif self.sequence_length % self.window_size:
            fail(f"sequence_length ({self.sequence_length}) must be a multiple of window_size "
                 f"({self.window_size}) when center_bin_to_predict is not set")
        if self.default_value is not None and math.isinf(self.default_value):
            fail("default_value must be finite or .nan")
        if self.scaling is not None:
            vals = list(self.scaling.values()) if isinstance(self.scaling, dict) else self.scaling
            if not isinstance(vals, (list, tuple)) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
                fail("scaling must be a list of finite numbers or a mapping track -> finite number")
        if self.tracks is not None and not (isinstance(self.tracks, int) and not isinstance(self.tracks, bool)
                                            or isinstance(self.tracks, list)):
            fail("tracks must be None, an integer k, or a list of track names")
        a = self.chromosome_aliases
        if a is not None and a != "auto" and not (
                isinstance(a, dict) and all(isinstance(k, (str, int)) and isinstance(v, (str, int)) for k, v in a.items())):
            fail("chromosome_aliases must be None, 'auto' or a mapping {name in the FASTA: name in the bigWigs}")
        self._validate_targets(fail)
        return self

    def _validate_targets(self, fail):
        """The shapes of strand_pairs, value_transforms and a regions mixture (track names and
        region files are checked by build(), which knows the collection)."""
        from .sampling.mixture import is_region_mixture, parse_region_mixture
        from .sampling.strands import normalize_strand_pairs
        from .transforms import parse_value_transforms
        for check, value in ((normalize_strand_pairs, self.strand_pairs),
                             (parse_value_transforms, self.value_transforms)):
            try:
                check(value)
            except ValueError as exc:
                fail(str(exc))
        if is_region_mixture(self.regions):
            try:
                parse_region_mixture(self.regions)
            except ValueError as exc:
                fail(str(exc))

    # -- building ---------------------------------------------------------------------------------
    def _check_batch_memory(self, coll):
        """Refuse at build time a batch (values and sequences) that cannot fit in memory."""
        from .collection import _check_memory
        from .dtypes import resolve_dtype
        item = resolve_dtype(self.dtype).itemsize
        target = self.center_bin_to_predict or self.sequence_length
        seq_cols = 4 if self.reference_genome else 0
        # the sequences are counted as extra "tracks" of the same length
        _check_memory(self.batch_size, target, _batch_tracks(self.tracks, coll.n_tracks), self.window_size, item)
        if seq_cols:
            _check_memory(self.batch_size, self.sequence_length, seq_cols, 1, item)

    def build(self, rank: int | None = None, world_size: int | None = None):
        """Open the files and return a BigWigDataset (iterate it once per epoch; `set_epoch(n)`)."""
        from .device import resolve_backend
        from .collection import BigWigCollection
        from .dataset import BigWigDataset
        from .sampling import QueryBatchGenerator

        self.validate()
        if not self.bigwig_paths:
            raise LoaderConfigError("bigwig_paths is empty: name the bigWig files (or a directory of them)")
        backend = resolve_backend(self.backend)
        paths = self.bigwig_paths[0] if len(self.bigwig_paths) == 1 and Path(self.bigwig_paths[0]).is_dir() \
            else self.bigwig_paths
        coll = BigWigCollection(paths, track_names=self.track_names, scaling=self.scaling,
                                cache_bytes=self.cache_bytes, backend=backend)
        genome = None
        try:
            genome = self._open_genome(coll)
            self._check_batch_memory(coll)
            sizes, report = self._sampling_extent(coll, genome)
            use_filter = genome is not None and self.max_unknown_fraction is not None
            gen = QueryBatchGenerator(
                sizes, coll.track_names, regions=_regions(self.regions), exclude=_regions(self.exclude),
                sequence_length=self.sequence_length, center_bin_to_predict=self.center_bin_to_predict,
                window_size=self.window_size, batch_size=self.batch_size, batches_per_epoch=self.batches_per_epoch,
                jitter=self.jitter, reverse_complement=self.reverse_complement, tracks=self.tracks, seed=self.seed,
                rank=rank, world_size=world_size, max_unknown_fraction=self.max_unknown_fraction if use_filter else None,
                genome=genome if use_filter else None, strand_pairs=self.strand_pairs)
            if genome is not None:   # every chromosome that can be sampled must be in the FASTA
                sampled = list(dict.fromkeys(gen.regions.chroms.tolist())) if gen.regions is not None \
                    else list(coll.chrom_sizes)
                genome.check_chromosomes(list(coll.chrom_sizes), query_chroms=sampled)
        except BaseException:
            coll.close()
            if genome is not None:
                genome.close()
            raise
        if report.mismatches:
            warnings.warn(report.summary(), AssemblyWarning, stacklevel=2)
        ds = BigWigDataset(coll, gen, num_workers=self.num_workers, queue_size=self.queue_size,
                           window_size=self.window_size, reduce=self.reduce, default_value=self.default_value,
                           dtype=self.dtype, genome=genome, threads_per_worker=self.threads_per_worker,
                           value_transforms=self.value_transforms, owns_collection=True)
        ds.assembly = report
        return ds

    def _open_genome(self, coll):
        """The reference genome under the bigWigs' chromosome names (chromosome_aliases applied)."""
        if not self.reference_genome:
            return None
        from .assembly import resolve_aliases
        from .sequence import ReferenceGenome
        genome = ReferenceGenome(self.reference_genome, one_hot_unknown=self.one_hot_unknown)
        if self.chromosome_aliases is not None:
            try:
                aliases = self.chromosome_aliases
                if isinstance(aliases, dict):
                    aliases = {str(k): str(v) for k, v in aliases.items()}
                names = resolve_aliases(aliases, list(genome.chrom_sizes), list(coll.chrom_sizes))
            finally:
                genome.close()
            genome = ReferenceGenome(self.reference_genome, one_hot_unknown=self.one_hot_unknown, aliases=names)
        try:
            genome.check_chromosomes(list(coll.chrom_sizes))
        except BaseException:
            genome.close()
            raise
        return genome

    def _sampling_extent(self, coll, genome):
        """(chromosome sizes to sample within, AssemblyReport): the files' sizes compared on every
        chromosome that can be sampled; a mismatch is an AssemblyError unless allow_size_mismatch,
        which keeps only the extent every file covers."""
        from .assembly import check_assembly, sampled_chromosomes
        sampled = sampled_chromosomes(_regions(self.regions), _regions(self.exclude), coll.chrom_sizes)
        report = check_assembly({p: f.chrom_sizes for p, f in zip(coll.paths, coll.files)}, sampled,
                                fasta_sizes=genome.chrom_sizes if genome is not None else None,
                                fasta_label=self.reference_genome or "the FASTA",
                                allow_mismatch=self.allow_size_mismatch)
        return {c: report.chrom_sizes.get(c, n) for c, n in coll.chrom_sizes.items()}, report


def _settings_doc(cls) -> str:
    """Every setting with its default and doc, for the class docstring (what help() shows)."""
    import textwrap
    lines = ["", "", "    Settings (the YAML keys):", ""]
    for name in cls._knobs():
        p = cls.param[name]
        default = "none" if p.default is None else repr(p.default)
        lines.append(f"    {name} (default {default})")
        lines += textwrap.wrap(p.doc or "", width=92, initial_indent="        ", subsequent_indent="        ")
    return "\n".join(lines)


LoaderConfig.__doc__ = (LoaderConfig.__doc__ or "").rstrip() + _settings_doc(LoaderConfig)


def _batch_tracks(tracks, n_tracks: int) -> int:
    if isinstance(tracks, int) and not isinstance(tracks, bool):
        return min(tracks, n_tracks)
    return len(tracks) if isinstance(tracks, list) else n_tracks


def _looks_like_path(text) -> bool:
    """One line naming a .yaml/.yml file (YAML text has a newline, a ': ' or starts with '{')."""
    if not isinstance(text, str) or "\n" in text or text.lstrip().startswith("{"):
        return False
    if Path(text).is_file():
        return True
    return ": " not in text and Path(text).suffix in (".yaml", ".yml")


def _regions(spec):
    """Config regions -> what QueryBatchGenerator takes (lists of intervals become tuples, also
    inside each source of a mixture)."""
    if isinstance(spec, dict):
        return {name: ({k: _regions(v) if k in ("regions", "exclude") else v for k, v in src.items()}
                       if isinstance(src, dict) else _regions(src)) for name, src in spec.items()}
    if isinstance(spec, list):
        return [tuple(r) for r in spec]
    return spec


def _plain(value):
    """NumPy scalars/arrays and tuples -> plain Python values that YAML can write."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if hasattr(value, "to_spec"):             # a ValueTransform step
        return value.to_spec()
    if isinstance(value, (list, tuple)) and value and all(hasattr(v, "weight") and hasattr(v, "regions")
                                                          for v in value):   # RegionSource list: a mapping
        return {v.name: {k: _plain(x) for k, x in (("regions", v.regions), ("weight", v.weight),
                                                     ("exclude", v.exclude)) if x is not None} for v in value}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b

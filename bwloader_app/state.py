"""`DashboardState`: one dashboard session (a browser tab or a notebook). It wires the data-root
browser, the stream runner and the sweep to one `LoaderConfig`, owns the query widgets that are not
plain config settings (chromosome picks, an uploaded BED, tracks per batch), and does YAML export
and import. Every param change happens in the caller's thread; `poll()` (a periodic callback in the
UI thread) moves what the background threads left behind into params."""
from __future__ import annotations

import os
from pathlib import Path

import param

from bwloader_core.config import LoaderConfig
from bwloader_core.device import available_backends

from .data_root import DataRootBrowser, confine, confine_mixture, default_data_root, ensure_demo_data
from .plot_data import sample_view
from .stream import StreamController
from .sweep import SweepRunner
from .util import error_text, knob_names

MAX_YAML_BYTES = 1 << 20    # uploads are parsed in the server: keep them small
MAX_BED_BYTES = 64 << 20
SNIPPET = '''from bwloader_core import LoaderConfig

cfg = LoaderConfig.from_yaml("loader.yaml")
dataset = cfg.build()                 # BigWigDataset: one epoch per iteration
for epoch in range(10):
    dataset.set_epoch(epoch)
    for batch in dataset:
        x = batch.sequences           # (batch, sequence_length, 4) one-hot, or None
        y = batch.values              # (batch, length // window_size, tracks)
        ...                           # train step
dataset.close()
'''


def mixture_summary(spec) -> str:
    """'mixture: peaks 50% (BED peaks.bed), background 50% (all chromosomes)'."""
    from bwloader_core.sampling.mixture import parse_region_mixture
    try:
        sources = parse_region_mixture(spec)
    except ValueError as exc:
        return f"invalid mixture ({exc})"
    total = sum(s.weight for s in sources)

    def where(r):
        if r is None or r == "all":
            return "all chromosomes"
        return f"BED {Path(r).name}" if isinstance(r, str) else f"{len(r):,} intervals"
    parts = [f"{s.name} {s.weight / total:.0%} ({where(s.regions)}" + (" minus exclude)" if s.exclude else ")")
             for s in sources]
    return "mixture: " + ", ".join(parts)


def describe_backend(backend: str) -> str:
    """The backend a loader with this setting runs on, and why where 'auto' falls back to the CPU."""
    from bwloader_core.device import cuda_unavailable_reason
    if backend == "cpu":
        return "cpu"
    reason = cuda_unavailable_reason()
    if reason is None:
        return "cuda"
    return f"cpu ({reason})" if backend == "auto" else f"none: {reason}"


MAX_PLOTTED_TRACKS = 8     # curves drawn for a sample; the others are picked by name


class DashboardState(param.Parameterized):
    """One browser session (or notebook) of the dashboard: a LoaderConfig and everything around it."""

    config = param.ClassSelector(class_=LoaderConfig, constant=True)
    browser = param.ClassSelector(class_=DataRootBrowser, constant=True)
    stream = param.ClassSelector(class_=StreamController, constant=True)
    sweep = param.ClassSelector(class_=SweepRunner, constant=True)

    chromosomes = param.ListSelector(default=[], objects=[], doc="chromosomes to sample from (none picked: all)")
    bed_name = param.String(default="", doc="name of the uploaded BED whose intervals are the regions")
    tracks_per_batch = param.Integer(default=0, bounds=(0, None), doc="tracks sampled per batch (0: all selected)")
    sample = param.Integer(default=0, bounds=(0, 1), doc="the sample of the batch to show")
    heatmap_track = param.Selector(default=None, objects=[], allow_None=True, doc="track of the heat map")
    plot_tracks = param.ListSelector(default=[], objects=[], doc=(
        f"tracks drawn for the sample, at most {MAX_PLOTTED_TRACKS} (the batch's first until others are "
        "picked): a batch of thousands of tracks draws a few curves, not thousands"))
    max_points = param.Integer(default=2000, bounds=(100, 20_000), doc="points per curve (min/max decimation)")
    upload_error = param.String(default="", doc="why the uploaded YAML was refused")
    bed_error = param.String(default="", doc="why the uploaded BED was refused")
    notice = param.String(default="", doc="what the last upload did")
    yaml_text = param.String(default="", doc="the config as YAML (what Download gives)")
    backend_in_use = param.String(default="cpu", doc="the backend the loader runs on ('auto' resolved)")
    files_check = param.String(default="", doc=(
        "what the checks of the chosen files found: chromosome names or sizes that differ between the "
        "bigWigs and the FASTA (the error build() would give), or what allow_size_mismatch leaves out"))
    files_check_level = param.Selector(default="", objects=["", "warning", "error"],
                                       doc="error: Start would fail; warning: it runs on part of the genome")

    def __init__(self, data_root=None, **params):
        root = Path(data_root) if data_root is not None else default_data_root()
        if data_root is None and not os.environ.get("BWLOADER_DATA"):
            ensure_demo_data(root)
        config = LoaderConfig()
        config.param.backend.objects = available_backends()   # this instance only: no cuda without a GPU
        browser = DataRootBrowser(root)
        super().__init__(config=config, browser=browser, stream=StreamController(config), sweep=SweepRunner(),
                         **params)
        self._syncing = False
        self._bed_regions = None
        self.browser.param.watch(self._on_files, ["tracks", "fasta", "chrom_sizes"])
        self.config.param.watch(self._on_config, knob_names())
        self.config.param.watch(lambda *e: self.check_files(),
                                ["allow_size_mismatch", "chromosome_aliases", "regions", "exclude"])
        self._on_files()
        self.yaml_text = self.config.to_yaml()
        self.backend_in_use = describe_backend(self.config.backend)

    # -- collection -> config ---------------------------------------------------------------------
    def _on_files(self, *events):
        sizes = self.browser.chrom_sizes
        self.param.chromosomes.objects = list(sizes)
        keep = [c for c in self.chromosomes if c in sizes]
        if keep != self.chromosomes:
            self.chromosomes = keep
        if self._syncing:
            return
        fasta = self.browser.fasta_path() if self.browser.fasta else None
        paths = self.browser.track_paths()
        changes = dict(bigwig_paths=paths, reference_genome=fasta)
        if paths != self.config.bigwig_paths:
            names = self.browser.track_names()     # names of other files do not carry over; links keep theirs
            changes["track_names"] = None if names == [Path(p).stem for p in paths] else names
            if isinstance(self.config.scaling, list) and len(self.config.scaling) != len(paths):
                changes["scaling"] = None
        self.config.param.update(**changes)
        self._update_regions()
        self.check_files()

    def check_files(self):
        """The checks build() makes across files, on the chosen tracks and FASTA, as soon as they
        are chosen: names the FASTA lacks (and which would match), sizes that differ (assemblies)."""
        from bwloader_core.assembly import check_assembly, resolve_aliases, sampled_chromosomes
        from bwloader_core.sequence import ReferenceGenome, check_chromosomes
        cfg, sizes, per_file = self.config, self.browser.chrom_sizes, self.browser.file_sizes
        if not per_file:
            self.param.update(files_check="", files_check_level="")
            return
        genome = None
        try:
            sampled = sampled_chromosomes(cfg.regions, cfg.exclude, sizes)
            fasta = self.browser.fasta_path() if self.browser.fasta else None
            if fasta:
                genome = ReferenceGenome(fasta)
                names = resolve_aliases(cfg.chromosome_aliases, list(genome.chrom_sizes), list(sizes))
                if names:
                    genome.close()
                    genome = ReferenceGenome(fasta, aliases=names)
                check_chromosomes(list(sizes), genome, query_chroms=sampled)
            report = check_assembly(per_file, sampled, fasta_sizes=genome.chrom_sizes if genome else None,
                                    fasta_label=fasta or "", allow_mismatch=cfg.allow_size_mismatch)
        except (ValueError, TypeError, OSError) as exc:
            self.param.update(files_check=str(exc), files_check_level="error")
            return
        finally:
            if genome is not None:
                genome.close()
        self.param.update(files_check=report.summary(), files_check_level="warning" if report.mismatches else "")

    # -- query widgets -> config ------------------------------------------------------------------
    @param.depends("chromosomes", "tracks_per_batch", watch=True)
    def _on_query_widgets(self):
        if self._syncing:
            return
        if self.chromosomes and self._bed_regions is not None:   # picking chromosomes drops the BED
            self._bed_regions = None
            self.bed_name = ""
        self._update_regions()
        self.config.tracks = self.tracks_per_batch or None

    def _update_regions(self):
        if self._syncing:
            return
        sizes = self.browser.chrom_sizes
        if self._bed_regions is not None:
            regions = self._bed_regions
        elif self.chromosomes and set(self.chromosomes) != set(sizes):
            regions = [[c, 0, int(sizes[c])] for c in self.chromosomes]
        elif isinstance(self.config.regions, dict):
            return                                 # a weighted mixture stays until chromosomes or a BED are picked
        else:
            regions = None
        if regions != self.config.regions:
            self.config.regions = regions

    def load_bed(self, data: bytes, name: str = "regions.bed") -> bool:
        """Regions from an uploaded BED (merged and clipped to the tracks' chromosomes)."""
        from bwloader_core.sampling import parse_bed
        self.bed_error = ""
        if len(data or b"") > MAX_BED_BYTES:
            self.bed_error = f"{name}: {len(data):,} bytes is larger than the {MAX_BED_BYTES:,} bytes a BED upload may be"
            return False
        try:
            regs = parse_bed(data or b"", self.browser.chrom_sizes, unknown_chroms="drop", source=name)
            if len(regs) == 0:
                raise ValueError(f"{name}: no interval of the BED lies on the tracks' chromosomes")
        except (ValueError, OSError) as exc:
            self.bed_error = str(exc)
            return False
        self._bed_regions = [[c, int(s), int(e)] for c, s, e in regs.to_list()]
        self._syncing = True
        try:
            self.chromosomes = []
        finally:
            self._syncing = False
        self.bed_name = name
        self.notice = f"regions: {len(regs):,} intervals, {regs.total_length:,} bp from {name}"
        self._update_regions()
        return True

    def clear_bed(self):
        self.bed_error = ""
        self._bed_regions = None
        self.bed_name = ""
        self._update_regions()

    @property
    def regions_summary(self) -> str:
        r = self.config.regions
        if r is None:
            return "all chromosomes"
        if isinstance(r, str):
            return f"BED {r}"
        if isinstance(r, dict):
            return mixture_summary(r)
        return f"{len(r):,} intervals, {sum(int(e) - int(s) for _, s, e in r):,} bp" + \
            (f" from {self.bed_name}" if self.bed_name else "")

    # -- config changed ---------------------------------------------------------------------------
    def _on_config(self, *events):
        self.yaml_text = self.config.to_yaml()
        self.backend_in_use = describe_backend(self.config.backend)
        self.stream.invalidate()

    # -- export / import --------------------------------------------------------------------------
    def to_yaml(self) -> str:
        return self.config.to_yaml()

    def load_yaml(self, text, name: str = "config") -> bool:
        """Restore the dashboard from a YAML config; on any problem set `upload_error` (readable)
        and change nothing."""
        self.upload_error = ""
        if len(text or "") > MAX_YAML_BYTES:
            self.upload_error = f"{name}: {len(text):,} bytes is larger than the {MAX_YAML_BYTES:,} bytes a config may be"
            return False
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            text = str(text or "")
            if "\n" not in text:
                text += "\n"                       # from_yaml would read a one-liner ending in .yaml as a path
            cfg = LoaderConfig.from_yaml(text)
            if cfg.backend not in self.config.param.backend.objects:
                raise ValueError(f"backend {cfg.backend!r} is not usable on this machine "
                                 f"(choose from {self.config.param.backend.objects})")
            self._apply(cfg)
        except (ValueError, OSError, TypeError, UnicodeDecodeError) as exc:
            self.upload_error = f"{name}: {error_text(exc)}" if not error_text(exc).startswith("config") \
                else f"{name}{error_text(exc)[len('config'):]}"
            return False
        self.notice = f"restored the dashboard from {name}"
        return True

    def _apply(self, cfg: LoaderConfig):
        browser = self.browser
        old = (browser.folder, list(browser.tracks), browser.fasta)
        # files first (confined to the data root); nothing of the config is applied if they fail
        if cfg.reference_genome:
            fa = confine(browser.root, cfg.reference_genome)
            if not fa.is_file():
                raise FileNotFoundError(f"reference genome not found: {cfg.reference_genome}")
        regions = cfg.regions
        if isinstance(regions, str):
            regions = str(confine(browser.root, regions))
        elif isinstance(regions, dict):
            regions = confine_mixture(browser.root, regions)
        exclude = str(confine(browser.root, cfg.exclude)) if isinstance(cfg.exclude, str) else cfg.exclude
        if cfg.bigwig_paths:
            try:
                browser.select_paths(cfg.bigwig_paths)
            except BaseException:
                browser.folder, browser.tracks, browser.fasta = old[0], old[1], old[2]
                raise
        if cfg.reference_genome:
            browser.fasta = confine(browser.root, cfg.reference_genome).relative_to(Path(browser.root)).as_posix()
        self._syncing = True
        try:
            spec = {n: getattr(cfg, n) for n in knob_names() if n not in ("bigwig_paths", "reference_genome")}
            spec["bigwig_paths"] = browser.track_paths() if cfg.bigwig_paths else self.config.bigwig_paths
            spec["reference_genome"] = browser.fasta_path() if cfg.reference_genome else None
            spec["regions"], spec["exclude"] = regions, exclude
            if not cfg.reference_genome:
                browser.fasta = ""
            self._bed_regions = None
            self.bed_name = ""
            sizes = browser.chrom_sizes
            if regions is None:
                self.chromosomes = []
            elif isinstance(regions, list) and all(len(r) >= 3 and r[0] in sizes and int(r[1]) == 0
                                                   and int(r[2]) >= sizes[r[0]] for r in regions):
                self.chromosomes = [r[0] for r in regions]
            else:
                self.chromosomes = []
                if isinstance(regions, list):
                    self._bed_regions = [list(r) for r in regions]
                    self.bed_name = "the uploaded config"
            self.tracks_per_batch = cfg.tracks if isinstance(cfg.tracks, int) else 0
            self.config.param.update(**spec)
        finally:
            self._syncing = False

    # -- live batches -----------------------------------------------------------------------------
    def start(self):
        if self.sweep.running:
            return
        self.stream.start()

    def step(self):
        if self.sweep.running:
            return
        self.stream.step()

    def pause(self):
        self.stream.pause()

    def run_sweep(self):
        self.stream.pause()
        self.stream.wait(30)
        self.sweep.run(self.config)

    def poll(self):
        """Called periodically in the UI thread: results of the background threads -> params."""
        if self.stream.poll() and self.stream.batch is not None:
            b = self.stream.batch
            self.param.sample.bounds = (0, max(b.batch_size - 1, 1))   # a slider needs start < end
            names = list(b.track_names)
            if names != self.param.heatmap_track.objects:     # only when they change: thousands of names
                self.param.heatmap_track.objects = names
                self.param.plot_tracks.objects = names
            updates = {}
            keep = [t for t in self.plot_tracks if t in names][:MAX_PLOTTED_TRACKS] or names[:MAX_PLOTTED_TRACKS]
            if keep != list(self.plot_tracks):
                updates["plot_tracks"] = keep
            if self.sample > b.batch_size - 1:
                updates["sample"] = b.batch_size - 1
            if self.heatmap_track not in names:
                updates["heatmap_track"] = names[0] if names else None
            if updates:
                self.param.update(**updates)
        self.sweep.poll()

    def sample_view(self) -> dict | None:
        b = self.stream.batch
        if b is None:
            return None
        names = set(b.track_names)
        tracks = [t for t in self.plot_tracks if t in names][:MAX_PLOTTED_TRACKS] or \
            list(b.track_names)[:MAX_PLOTTED_TRACKS]
        return sample_view(b, self.sample, self.max_points, tracks=tracks)

    def close(self):
        self.sweep.close()
        self.stream.close()

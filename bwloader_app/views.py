"""Views of the dashboard: `pn.viewable.Viewer`s whose widgets come from the models' parameters.

`Dashboard(state)` is the whole thing: `.sidebar` and `.main` go into a template for `panel serve`
(bwloader_app/dashboard.py); displayed on its own (a notebook cell) it renders both side by side.
"""
from __future__ import annotations

import functools
import io

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from panel.theme.fast import Fast as _PanelFast
from panel.viewable import Viewer

from .plot_data import bucket_columns
from .state import MAX_PLOTTED_TRACKS, SNIPPET, DashboardState
from .stream import RATE_WINDOW_S, STAGES
from .util import human_bytes

ACCENT = "#2b6cb0"
CURVE_HEIGHT = 60
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22"]
# dimension names unique to each plot: Panel links the axes of panes that share a dimension name
WORKERS = hv.Dimension("sweep_workers", label="workers")
SWEEP_SPS = hv.Dimension("sweep_sps", label="samples/s")
BASE_COLORS = {"A": "#2ca02c", "C": "#1f77b4", "G": "#ff7f0e", "T": "#d62728", "N": "#999999"}


_extensions_loaded = False


def load_extensions(session: bool = False):
    """Load HoloViews' Bokeh renderer and Panel's browser code (with Tabulator). In a notebook the
    first call puts that code into the cell's output (once per kernel); `session=True` (a served
    page) loads it into every session."""
    global _extensions_loaded
    if _extensions_loaded and not session:
        return
    hv.extension("bokeh", logo=False)
    if session:
        pn.extension("tabulator", notifications=False, sizing_mode="stretch_width")
    else:
        pn.extension("tabulator", notifications=False)
    _extensions_loaded = True


class LocalFast(_PanelFast):
    """Panel's Fast design without its web font: the page asks nothing of fonts.googleapis.com
    (system sans-serif fonts instead)."""
    _resources = {k: v for k, v in _PanelFast._resources.items() if k != "font"}


LocalFast.__name__ = "Fast"     # Panel finds the design's bundled files under the class name


def _pad_left(plot, element):
    """The same left border on every stacked plot, so that their x axes line up."""
    plot.state.min_border_left = 60
    plot.state.min_border_right = 20


def _md(text: str) -> str:
    """A multi-line message as Markdown: indented lines (one item each, as errors list them)
    become bullets, other lines paragraphs."""
    out = []
    for line in (text or "").split("\n"):
        if line.startswith("  "):
            out.append(f"- {line.strip()}")
        else:
            out.append(("\n" if out else "") + line + "\n")
    return "\n".join(out)


def _alert(model, name, alert_type="danger"):
    """An Alert that shows the model's message parameter and hides when it is empty."""
    def show(text):
        return pn.pane.Alert(_md(text), alert_type=alert_type, visible=bool(text), margin=(5, 10),
                             sizing_mode="stretch_width")
    return pn.panel(pn.bind(show, model.param[name]))


# ------------------------------------------------------------------------------------------------
class CollectionView(Viewer):
    """Folder, tracks and FASTA under the data root, and each file's summary."""

    state = param.ClassSelector(class_=DashboardState)

    def __init__(self, **params):
        super().__init__(**params)
        b = self.state.browser
        self.folder = pn.widgets.AutocompleteInput.from_param(
            b.param.folder, options=b.folders, restrict=False, min_characters=0, case_sensitive=False,
            name="Folder of bigWig files (under the data root)", sizing_mode="stretch_width")
        doc = self.state.config.param
        self.tracks = pn.widgets.MultiSelect.from_param(b.param.tracks, name="Tracks", size=8,
                                                        sizing_mode="stretch_width", description=doc.bigwig_paths.doc)
        self.fasta = pn.widgets.AutocompleteInput.from_param(
            b.param.fasta, options=b.fastas, restrict=False, min_characters=0, name="Reference FASTA (empty: none)",
            sizing_mode="stretch_width", description=doc.reference_genome.doc)
        self.pin = pn.widgets.Checkbox.from_param(b.param.fasta_pinned, name="Keep this FASTA when the folder changes")
        self.file_knobs = knob_pane(self.state.config, FILE_KNOBS, name="Files")
        self.rescan = pn.widgets.Button(name="Rescan data root", button_type="light", width=140)
        self.rescan.on_click(lambda e: self._rescan())
        b.param.watch(lambda e: setattr(self.folder, "options", e.new), "folders")
        b.param.watch(lambda e: setattr(self.fasta, "options", e.new), "fastas")
        self.summary = pn.widgets.Tabulator(self._summary_frame(), disabled=True, show_index=False,
                                            pagination="local", page_size=50,   # thousands of files: pages
                                            sizing_mode="stretch_width", height=260, name="file summary",
                                            css_classes=["bw-summary"])
        b.param.watch(lambda e: setattr(self.summary, "value", self._summary_frame()), "summaries")
        b.param.watch(self._resync, "message")

    def _resync(self, event):
        """A refused path is put back in the model while the browser's own change is being
        processed, and Panel does not echo that back: send the model's values on the next tick."""
        if not event.new:
            return

        def push():
            for w in (self.folder, self.fasta):
                w.param.trigger("value")
        pn.state.execute(push, schedule=True)

    def about(self):
        """The package version and the backend the loader runs on."""
        from bwloader_core import __version__
        return pn.pane.Markdown(pn.bind(lambda b: f"bwloader {__version__} · backend in use: **{b}**",
                                        self.state.param.backend_in_use),
                                css_classes=["bw-about"], margin=(0, 10))

    def _rescan(self):
        self.state.browser.refresh()

    def _summary_frame(self):
        cols = ["track", "chroms", "bases", "zooms", "blocks", "size", "blocks stored", "transcoding"]
        rows = [dict(track=s["track"], chroms=s["chromosomes"], bases=f"{s['bases']:,}",
                     zooms=s["zoom_levels"], blocks=s["blocks"], size=human_bytes(s["size_bytes"]),
                     **{"blocks stored": "compressed" if s.get("compressed") else
                        ("raw, read in place" if s.get("in_place") else "raw"),
                        "transcoding": s.get("transcode_note", "")})
                for s in self.state.browser.summaries]
        return pd.DataFrame(rows, columns=cols)

    def __panel__(self):
        b = self.state.browser
        return pn.Column(
            self.about(),
            pn.pane.Markdown(f"**Data root** `{b.root}`", margin=(0, 10)),
            self.folder, _alert(b, "message", "warning"), self.tracks, self.fasta, self.pin,
            self.file_knobs, self.files_check(), self.rescan, sizing_mode="stretch_width")

    def files_check(self):
        """What the checks across the chosen files found: red when Start would fail, amber when it
        runs on part of the genome (allow_size_mismatch)."""
        def show(text, level):
            return pn.pane.Alert(_md(text), alert_type="danger" if level == "error" else "warning",
                                 visible=bool(text), margin=(5, 10), sizing_mode="stretch_width",
                                 css_classes=["bw-files-check"])
        s = self.state
        return pn.panel(pn.bind(show, s.param.files_check, s.param.files_check_level))

    def summary_panel(self):
        return pn.Column(pn.pane.Markdown("#### Files (read with `BigWigFile`)"), self.summary,
                         sizing_mode="stretch_width")


# ------------------------------------------------------------------------------------------------
KNOB_GROUPS = {
    "Window": ["sequence_length", "center_bin_to_predict", "window_size", "reduce"],
    "Batches": ["batch_size", "batches_per_epoch", "seed", "jitter", "reverse_complement", "max_unknown_fraction"],
    "Output": ["dtype", "default_value", "one_hot_unknown"],
    "Performance": ["num_workers", "threads_per_worker", "queue_size", "cache_bytes", "backend"],
    "Advanced (Python literals)": ["exclude", "scaling", "track_names"],
    "Training targets (Python literals)": ["strand_pairs", "value_transforms"],
}
# settings shown with the files (the Collection card), and all those with widgets of their own elsewhere
FILE_KNOBS = ("allow_size_mismatch", "chromosome_aliases")
KNOBS_ELSEWHERE = ("bigwig_paths", "reference_genome", "regions", "tracks") + FILE_KNOBS
RADIO = {"type": pn.widgets.RadioButtonGroup, "button_type": "primary", "button_style": "outline"}
KNOB_WIDGETS = {
    "num_workers": pn.widgets.IntInput,
    "queue_size": pn.widgets.IntInput,
    "threads_per_worker": pn.widgets.IntInput,
    "max_unknown_fraction": {"type": pn.widgets.FloatInput, "step": 0.05, "start": 0.0, "end": 1.0},
    "default_value": pn.widgets.FloatInput,
    "backend": RADIO,
    "dtype": RADIO,
    "reduce": RADIO,
    "one_hot_unknown": RADIO,
    "cache_bytes": {"type": pn.widgets.IntInput, "step": 1 << 20},
}
# what an empty field means, for settings whose default is None ("automatic")
PLACEHOLDERS = {
    "center_bin_to_predict": "automatic: the whole window",
    "batches_per_epoch": "automatic: region length / (sequence length x batch size)",
    "threads_per_worker": "automatic: CPUs / workers",
    "max_unknown_fraction": "none: keep every window",
    "exclude": "none",
    "scaling": "none: every factor 1",
    "track_names": "automatic: file names",
    "chromosome_aliases": "none: the FASTA uses the bigWigs' names ('auto': 1 = chr1, MT = chrM)",
}


def knob_pane(cfg, names, **kw):
    """pn.Param of `names` of the config: two-way widgets whose tooltips are the settings' docs
    (checkboxes, which have no tooltip of their own, get an icon beside them)."""
    pane = pn.Param(cfg, parameters=list(names), show_name=False, sizing_mode="stretch_width",
                    widgets={k: w for k in names if (w := knob_widget(cfg, k)) is not None}, **kw)
    labels = {cfg.param[n].label: cfg.param[n].doc for n in names}
    for i, w in enumerate(list(pane.layout)):
        if isinstance(w, pn.widgets.Checkbox) and labels.get(w.name):
            pane.layout[i] = pn.Row(w, pn.widgets.TooltipIcon(value=labels[w.name], margin=(8, 0)))
    return pane


def knob_groups() -> dict[str, list[str]]:
    """KNOB_GROUPS, with any other LoaderConfig setting (one added later) under Advanced."""
    from .util import knob_names
    listed = {k for names in KNOB_GROUPS.values() for k in names} | set(KNOBS_ELSEWHERE)
    groups = {t: list(n) for t, n in KNOB_GROUPS.items()}
    groups["Advanced (Python literals)"] += [k for k in knob_names() if k not in listed]
    return groups


def knob_widget(cfg, name):
    """The widget spec of one setting: KNOB_WIDGETS, plus a placeholder where empty means automatic."""
    spec = KNOB_WIDGETS.get(name)
    p = cfg.param[name]
    if getattr(p, "allow_None", False):
        spec = dict(spec) if isinstance(spec, dict) else ({"type": spec} if spec is not None else {})
        if "type" not in spec:
            if isinstance(p, param.Integer):
                spec["type"] = pn.widgets.IntInput
            elif isinstance(p, param.Number):
                spec["type"] = pn.widgets.FloatInput
            elif isinstance(p, (param.String,)):
                spec["type"] = pn.widgets.TextInput
            else:
                spec["type"] = pn.widgets.LiteralInput
        spec["placeholder"] = PLACEHOLDERS.get(name, "automatic")
    return spec


class QueryView(Viewer):
    """Every LoaderConfig knob as a widget (pn.Param on the config itself: two-way), plus the
    region picks, a BED upload and tracks per batch."""

    state = param.ClassSelector(class_=DashboardState)

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self.chromosomes = pn.widgets.MultiChoice.from_param(
            s.param.chromosomes, name="Chromosomes (none: all)", sizing_mode="stretch_width",
            description=s.config.param.regions.doc + " (here: whole chromosomes, or an uploaded BED)")
        self.bed = pn.widgets.FileInput(accept=".bed,.txt,.bed.gz", name="BED of regions", multiple=False)
        self.bed.param.watch(self._on_bed, "value")
        self.clear_bed = pn.widgets.Button(name="Clear BED", button_type="light", width=90)
        self.clear_bed.on_click(lambda e: s.clear_bed())
        self.tracks_per_batch = pn.widgets.IntInput.from_param(s.param.tracks_per_batch,
                                                               name="Tracks per batch (0: all)",
                                                               description=s.config.param.tracks.doc)
        self.groups = {title: knob_pane(s.config, names, name=title) for title, names in knob_groups().items()}

    def _on_bed(self, event):
        if event.new:
            self.state.load_bed(event.new, self.bed.filename or "regions.bed")

    def regions_panel(self):
        s = self.state
        summary = pn.bind(lambda *_: pn.pane.Markdown(f"Regions: **{s.regions_summary}**", margin=(0, 10)),
                          s.config.param.regions, s.param.bed_name)
        return pn.Column(self.chromosomes, pn.Row(self.bed, self.clear_bed), pn.panel(summary),
                         _alert(s, "bed_error"), sizing_mode="stretch_width")

    def __panel__(self):
        cards = [pn.Card(self.regions_panel(), title="Regions", sizing_mode="stretch_width")]
        for title, widget in self.groups.items():
            extra = [self.tracks_per_batch] if title == "Batches" else []
            if title.startswith("Training targets"):
                extra = [pn.panel(pn.bind(_targets_summary, self.state.config.param.value_transforms,
                                          self.state.config.param.strand_pairs))]
            cards.append(pn.Card(widget, *extra, title=title, sizing_mode="stretch_width",
                                 collapsed=title.startswith("Advanced")))
        return pn.Column(*cards, sizing_mode="stretch_width")


def _targets_summary(transforms, pairs):
    """One line under the training-target knobs: the transform chain and the strand pairs."""
    from bwloader_core.sampling.strands import normalize_strand_pairs
    from bwloader_core.transforms import describe_transforms
    try:
        text = f"Transforms: **{describe_transforms(transforms)}**"
        pairs = normalize_strand_pairs(pairs)
        text += f" · strand pairs: **{', '.join(f'{a}/{b}' for a, b in pairs) if pairs else 'none'}**"
    except ValueError as exc:
        text = f"⚠ {exc}"
    return pn.pane.Markdown(text, margin=(0, 10))


# ------------------------------------------------------------------------------------------------
class BatchView(Viewer):
    """Start / Pause / Step, and the current batch: stacked tracks of a sample over genomic
    coordinates (linked x), the DNA of its window, and a batch x position heat map."""

    state = param.ClassSelector(class_=DashboardState)

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self.start = pn.widgets.Button(name="Start", button_type="success", width=100)
        self.pause = pn.widgets.Button(name="Pause", button_type="warning", width=100)
        self.step = pn.widgets.Button(name="Step", button_type="primary", width=100)
        self.start.on_click(lambda e: s.start())
        self.pause.on_click(lambda e: s.pause())
        self.step.on_click(lambda e: s.step())
        self.sample = pn.widgets.IntSlider.from_param(s.param.sample, name="Sample", width=260)
        self.heat_track = pn.widgets.Select.from_param(s.param.heatmap_track, name="Heat map track", width=220)
        self.plot_tracks = pn.widgets.MultiChoice.from_param(
            s.param.plot_tracks, name=f"Tracks drawn (at most {MAX_PLOTTED_TRACKS}; type to search)",
            max_items=MAX_PLOTTED_TRACKS, search_option_limit=50, sizing_mode="stretch_width",
            css_classes=["bw-plot-tracks"])
        self.status = pn.pane.Markdown(self._status_text(), css_classes=["bw-status"], margin=(0, 10))
        watched = ["status", "batch", "epoch", "index", "batches_per_epoch", "batches", "unknown_fraction"]
        s.stream.param.watch(lambda *e: setattr(self.status, "object", self._status_text()), watched)
        self.coords = pn.pane.Markdown("", css_classes=["bw-coords"], margin=(0, 10))
        self._view = None
        self._shape = None
        self._tick = hv.streams.Counter()
        self._tick_heat = hv.streams.Counter()
        self.tracks_pane = pn.Column(sizing_mode="stretch_width")
        self.heat_pane = pn.pane.HoloViews(None, sizing_mode="stretch_width", linked_axes=False)
        self.dna_letters = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["bw-dna"])
        s.stream.param.watch(self._redraw, "batch")
        s.param.watch(self._redraw, ["sample", "plot_tracks"])
        s.param.watch(self._redraw_heat, ["heatmap_track"])

    def _status_text(self):
        st = self.state.stream
        where = f"epoch {st.epoch}, next batch {st.index}"
        if st.batches_per_epoch:
            where += f" of {st.batches_per_epoch}"
        text = f"**{st.status}** · batches received: **{st.batches}** · {where}"
        if st.unknown_fraction is not None:
            text += f" · N in sequences: **{st.unknown_fraction:.1%}**"
        return text

    # -- drawing ----------------------------------------------------------------------------------
    # The plots are DynamicMaps fed by a Counter stream: a new batch only replaces the data of the
    # existing Bokeh plots. The layout is rebuilt only when its shape (tracks, DNA strip) changes.
    def _redraw(self, *events):
        v = self.state.sample_view()
        if v is None:
            return
        self._view = v
        rc_note = " — reverse-complement sample, drawn in genome orientation" if v["strand"] == "-" else ""
        target = "" if (v["target_start"], v["target_end"]) == (v["start"], v["end"]) else \
            f" · target {v['target_start']:,}-{v['target_end']:,}"
        if v.get("source"):
            target += f" · source **{v['source']}**"
        self.coords.object = (f"Sample **{v['index']}**: `{v['coordinates']}`{target} · strand **{v['strand']}** · "
                              f"{v['n_points']:,} bins of {v['window']:g} bp per track{rc_note}" +
                              (f" · drawing {len(v['curves'])} of {v['n_tracks']:,} tracks"
                               if len(v["curves"]) < v.get("n_tracks", 0) else ""))
        dna = v["dna"]
        self.dna_letters.object = self._letters_html(dna) if dna is not None and dna["kind"] == "letters" else ""
        shape = (len(v["curves"]), None if dna is None else dna["kind"])
        if shape != self._shape:
            self._shape = shape
            self.tracks_pane.objects = self._tracks_layout(*shape)
        else:
            self._tick.event()
        if not events or any(getattr(e, "name", "") == "batch" for e in events):
            self._redraw_heat()

    def _curve(self, k, counter=0):
        v = self._view
        names = list(v["curves"])
        name = names[k] if k < len(names) else ""
        x, y = v["curves"][name] if name else (np.zeros(0), np.zeros(0))
        x_dim = hv.Dimension("position", label="genomic position (bp)")
        # a distinct y dimension per slot: Panel would otherwise link the y ranges of all panes
        return hv.Curve((x, y), x_dim, hv.Dimension(f"track_{k}", label=name or f"track {k}"), label=name)

    def _strip(self, counter=0):
        v = self._view
        dna = v["dna"]
        x_dim = hv.Dimension("position", label="genomic position (bp)")
        return hv.Image(dna["strip"][::-1], bounds=(dna["start"], 0, dna["end"], 4), kdims=[x_dim, "base"],
                        vdims=["fraction"])

    def _tracks_layout(self, n_tracks, dna_kind):
        """One HoloViews pane per track (Panel links their x axes: same `position` dimension).
        A single hv.Layout would be lighter, but inside Cards/Tabs its responsive grid loses its
        titles and y axes (Panel 1.9 / Bokeh 3.9)."""
        panes = []
        for k in range(n_tracks):
            last = k == n_tracks - 1 and dna_kind != "strip"
            dm = hv.DynamicMap(functools.partial(self._curve, k), streams=[self._tick], cache_size=1).opts(
                hv.opts.Curve(color=PALETTE[k % len(PALETTE)], frame_height=CURVE_HEIGHT, responsive=True,
                              xaxis="bottom" if last else None, tools=["hover", "xwheel_zoom"],
                              active_tools=["xwheel_zoom"], show_legend=False, yticks=3, framewise=True,
                              ylabel="", title="{label}", fontsize={"title": "10pt"}, toolbar=None,
                              hooks=[_pad_left]))
            panes.append(pn.pane.HoloViews(dm, sizing_mode="stretch_width", margin=(0, 5)))
        if dna_kind == "strip":
            dm = hv.DynamicMap(self._strip, streams=[self._tick], cache_size=1).opts(hv.opts.Image(
                cmap="Greys", frame_height=48, responsive=True, yticks=[(0.5, "T"), (1.5, "G"), (2.5, "C"), (3.5, "A")],
                ylabel="", title="DNA (fraction of each base)", fontsize={"title": "10pt"}, colorbar=False,
                clim=(0, 1), tools=["hover"], framewise=True, toolbar=None, hooks=[_pad_left]))
            panes.append(pn.pane.HoloViews(dm, sizing_mode="stretch_width", margin=(0, 5)))
        return panes

    @staticmethod
    def _letters_html(dna):
        spans = "".join(f'<span style="color:{BASE_COLORS.get(c, "#999")}">{c}</span>' for c in dna["letters"])
        return (f'<div style="font-family:monospace;font-size:13px;word-break:break-all;line-height:1.3">'
                f'<b>DNA {dna["start"]:,}-{dna["end"]:,}</b><br>{spans}</div>')

    def _redraw_heat(self, *events):
        b = self.state.stream.batch
        if b is None or self.state.heatmap_track not in b.track_names:
            return
        if self.heat_pane.object is None:
            self.heat_pane.object = hv.DynamicMap(self._heat, streams=[self._tick_heat], cache_size=1).opts(hv.opts.Image(
                cmap="viridis", colorbar=True, responsive=True, height=260, tools=["hover"], framewise=True))
        else:
            self._tick_heat.event()

    def _heat(self, counter=0):
        b = self.state.stream.batch
        name = self.state.heatmap_track
        t = list(b.track_names).index(name) if name in b.track_names else 0
        data = bucket_columns(np.asarray(b.values[:, :, t]).astype(np.float32), 1000)
        length = int(b.target_ends[0] - b.target_starts[0])
        return hv.Image(data[::-1], bounds=(0, 0, length, b.batch_size),
                        kdims=[hv.Dimension("offset", label="position in window (bp, as in the tensor)"),
                               hv.Dimension("sample")], vdims=[hv.Dimension("value", label=name)],
                        label=f"{name}: batch {b.index} (epoch {b.epoch}), {b.batch_size} samples x "
                              f"{b.values.shape[1]:,} bins")

    def controls(self):
        return pn.Row(self.start, self.pause, self.step, self.status, align="center", sizing_mode="stretch_width")

    def __panel__(self):
        s = self.state
        return pn.Column(
            self.controls(),
            _alert(s.stream, "error"),
            pn.Row(self.sample, self.heat_track),
            self.plot_tracks,
            self.coords,
            self.tracks_pane,
            self.dna_letters,
            self.heat_pane,
            sizing_mode="stretch_width")


# ------------------------------------------------------------------------------------------------
class ThroughputView(Viewer):
    """samples/s, MB/s and the per-stage breakdown of the live stream; the batch size x workers sweep."""

    state = param.ClassSelector(class_=DashboardState)

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        fmt = "{value:,.0f}"
        self.sps = pn.indicators.Number(name="samples/s", value=0, format=fmt, font_size="28pt",
                                        title_size="11pt", css_classes=["bw-sps"])
        self.mbps = pn.indicators.Number(name="MB/s", value=0, format="{value:,.1f}", font_size="28pt",
                                         title_size="11pt", css_classes=["bw-mbps"])
        self.nb = pn.indicators.Number(name="batches", value=0, format="{value:,.0f}", font_size="28pt",
                                       title_size="11pt", css_classes=["bw-batches"])
        self.rate_note = pn.pane.Markdown("", css_classes=["bw-rate-note"], margin=(25, 10))
        s.stream.param.watch(self._numbers, ["samples_per_s", "mb_per_s", "batches", "status"])
        self._tick_stats = hv.streams.Counter()
        self.stages = pn.pane.HoloViews(
            hv.DynamicMap(self._stage_plot, streams=[self._tick_stats], cache_size=1), sizing_mode="stretch_width",
            linked_axes=False)
        self.history = pn.pane.HoloViews(
            hv.DynamicMap(self._history_plot, streams=[self._tick_stats], cache_size=1), sizing_mode="stretch_width",
            linked_axes=False)
        s.stream.param.watch(lambda *e: self._tick_stats.event(), ["stage_ms", "history"])
        sw = s.sweep
        self.sweep_button = pn.widgets.Button(name="Run sweep", button_type="primary", width=120)
        self.sweep_button.on_click(lambda e: s.run_sweep())
        self.sweep_sizes = pn.widgets.LiteralInput.from_param(sw.param.batch_sizes, name="Batch sizes", width=150)
        self.sweep_workers = pn.widgets.LiteralInput.from_param(sw.param.worker_counts, name="Worker counts", width=150)
        self.sweep_n = pn.widgets.IntInput.from_param(sw.param.batches_per_point, name="Batches per point", width=130)
        self.progress = pn.indicators.Progress(value=0, max=100, width=300, bar_color="primary", visible=False)
        self.sweep_msg = pn.pane.Markdown("", css_classes=["bw-sweep-msg"])
        self.sweep_plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", linked_axes=False)
        sw.param.watch(self._sweep_update, ["progress", "running", "results", "message"])

    def _numbers(self, *events):
        st = self.state.stream
        self.sps.value = round(st.samples_per_s, 1)
        self.mbps.value = round(st.mb_per_s, 2)
        self.nb.value = st.batches
        self.rate_note.object = self._rate_note()

    def _rate_note(self):
        st = self.state.stream
        if st.status == "paused" and st.history:
            return "**paused**: the last figures of the run"
        if st.status == "running":
            return f"the current run, over its last {RATE_WINDOW_S:g} s"
        return ""

    def _stage_plot(self, counter=0):
        ms = self.state.stream.stage_ms or {}
        data = [(k, ms.get(k, 0.0)) for k in STAGES]
        return hv.Bars(data, hv.Dimension("stage"), hv.Dimension("ms", label="ms per batch")).opts(
            responsive=True, height=230, color=ACCENT, tools=["hover"], xrotation=30,
            title="ms per batch by stage (last 10 batches)")

    def _history_plot(self, counter=0):
        h = self.state.stream.history
        data = h if h else [(0.0, 0.0)]
        return hv.Curve(data, hv.Dimension("stream_t", label="seconds since Start"),
                        hv.Dimension("stream_sps", label="samples/s")).opts(
            responsive=True, height=230, color=ACCENT, tools=["hover"], title="samples/s while streaming",
            framewise=True)

    def _sweep_update(self, *events):
        sw = self.state.sweep
        self.progress.value = int(sw.progress)
        self.progress.visible = bool(sw.running)
        self.sweep_button.disabled = bool(sw.running)
        self.sweep_msg.object = sw.message
        if any(e.name == "results" for e in events):
            self.sweep_plot.object = self._sweep_plot(sw.results)

    @staticmethod
    def _sweep_plot(results):
        ours = [r for r in results if r["kind"] == "bwloader"]
        if not ours:
            return None
        overlay = []
        for k, bs in enumerate(sorted({r["batch_size"] for r in ours})):
            pts = sorted((r["workers"], r["samples_per_s"]) for r in ours if r["batch_size"] == bs)
            label = f"bwloader, batch {bs}"
            overlay.append(hv.Curve(pts, WORKERS, SWEEP_SPS,
                                    label=label).opts(color=PALETTE[k % len(PALETTE)], line_width=2))
            overlay.append(hv.Scatter(pts, WORKERS, SWEEP_SPS, label=label).opts(
                color=PALETTE[k % len(PALETTE)], size=8, tools=["hover"]))
        base = [r for r in results if r["kind"] != "bwloader"]
        if base:
            ws = sorted({r["workers"] for r in ours})
            y = base[0]["samples_per_s"]
            overlay.append(hv.Curve([(ws[0], y), (ws[-1], y)], WORKERS, SWEEP_SPS,
                                    label=f"pyBigWig loop ({y:,.0f} samples/s)").opts(
                color="black", line_dash="dashed", line_width=2))
        return hv.Overlay(overlay).opts(responsive=True, height=320, legend_position="top_left",
                                        title="Sweep: samples/s by worker count", logy=False,
                                        xticks=sorted({r["workers"] for r in ours}))

    def __panel__(self):
        return pn.Column(
            pn.Row(self.sps, self.mbps, self.nb, self.rate_note),
            pn.Row(self.stages, self.history, sizing_mode="stretch_width"),
            pn.pane.Markdown("#### Sweep: batch sizes x worker counts (pyBigWig `values()` loop as baseline)"),
            pn.Row(self.sweep_sizes, self.sweep_workers, self.sweep_n, self.sweep_button, align="end"),
            pn.Row(self.progress, self.sweep_msg),
            self.sweep_plot,
            sizing_mode="stretch_width")


# ------------------------------------------------------------------------------------------------
class ExportView(Viewer):
    """Download the config as YAML, the snippet that loads it, and YAML upload to restore."""

    state = param.ClassSelector(class_=DashboardState)

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self.download = pn.widgets.FileDownload(callback=self._yaml_file, filename="loader.yaml",
                                                label="Download loader.yaml", button_type="primary",
                                                embed=False, width=220)
        self.upload = pn.widgets.FileInput(accept=".yaml,.yml", multiple=False, name="Restore from YAML")
        self.upload.param.watch(self._on_upload, "value")
        self.yaml = pn.pane.Markdown(self._yaml_md(), css_classes=["bw-yaml"], sizing_mode="stretch_width")
        s.param.watch(lambda e: setattr(self.yaml, "object", self._yaml_md()), "yaml_text")
        self.snippet = pn.pane.Markdown(f"```python\n{SNIPPET}```", sizing_mode="stretch_width")
        self.notice = pn.pane.Markdown("", css_classes=["bw-notice"])
        s.param.watch(lambda e: setattr(self.notice, "object", e.new), "notice")

    def _yaml_md(self):
        return f"```yaml\n{self.state.yaml_text}```"

    def _yaml_file(self):
        return io.StringIO(self.state.to_yaml())

    def _on_upload(self, event):
        if event.new is None:
            return
        self.state.load_yaml(event.new, self.upload.filename or "uploaded YAML")

    def __panel__(self):
        s = self.state
        return pn.Row(
            pn.Column(pn.pane.Markdown("#### The config\nWhat the training script reads (only what differs "
                                       "from the defaults):"), self.download, self.yaml,
                      sizing_mode="stretch_width"),
            pn.Column(pn.pane.Markdown("#### In training"), self.snippet,
                      pn.pane.Markdown("#### Restore the dashboard from a YAML"), self.upload,
                      _alert(s, "upload_error"), self.notice, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")


# ------------------------------------------------------------------------------------------------
class Dashboard(Viewer):
    """The whole dashboard for one session: a sidebar (collection and knobs) and a main area (live
    batches, throughput, export). Results of the background threads reach the page through a
    periodic callback that calls `state.poll()`."""

    state = param.ClassSelector(class_=DashboardState)
    period_ms = param.Integer(default=400, bounds=(50, 10_000))

    def __init__(self, state: DashboardState | None = None, data_root=None, **params):
        """`Dashboard()` (data root: $BWLOADER_DATA, else the demo collection),
        `Dashboard(data_root="/path/to/folders")`, or `Dashboard(state)` around an existing
        DashboardState."""
        load_extensions()
        if state is None:
            state = DashboardState(data_root)
        elif data_root is not None:
            raise ValueError("give a DashboardState or a data_root, not both")
        super().__init__(state=state, **params)
        s = self.state
        self.collection = CollectionView(state=s)
        self.queries = QueryView(state=s)
        self.batches = BatchView(state=s)
        self.throughput = ThroughputView(state=s)
        self.export = ExportView(state=s)
        self._callback = None
        self.sidebar = pn.Column(
            pn.Card(self.collection, title="Collection", sizing_mode="stretch_width"),
            self.queries, sizing_mode="stretch_width")
        # Cards, not Tabs: responsive HoloViews layouts inside pn.Tabs lose their axes and titles
        # (Panel 1.9 / Bokeh 3.9), and one scrolling page shows everything at once.
        card = dict(sizing_mode="stretch_width", collapsible=True, margin=(5, 5))
        self.main = pn.Column(
            pn.Card(self.batches, title="Live batches", **card),
            pn.Card(self.throughput, title="Throughput", **card),
            pn.Card(self.export, title="Export", **card),
            pn.Card(self.collection.summary_panel(), title="Files", **card),
            sizing_mode="stretch_width")

    def start_polling(self):
        """Start the periodic callback (once) in the current session or notebook."""
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.state.poll, period=self.period_ms)
        return self._callback

    def close(self):
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        self.state.close()

    def __panel__(self):
        self.start_polling()
        return pn.Row(pn.Column(self.sidebar, width=380), self.main, sizing_mode="stretch_width")

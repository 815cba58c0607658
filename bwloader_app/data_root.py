"""The data root: folders of bigWig files and FASTAs under one folder, and nothing outside it.

`DataRootBrowser` is the model of the dashboard's Collection card: the folder, its tracks, the
FASTA, and each file's summary. Paths are confined to the root (`..`, absolute paths and symlinks
that point out are refused with `PathOutsideRootError`).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import param

from bwloader_core.format import BigWigFile

from .util import PathOutsideRootError, error_text

BIGWIG_SUFFIXES = (".bw", ".bigwig")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz", ".fa.bgz")
MAX_SCAN_DEPTH = 4
MAX_SCAN_ENTRIES = 20_000


def default_data_root() -> Path:
    """`BWLOADER_DATA`, else the demo collection in the user's cache folder
    (`bwloader_core.demo.default_demo_dir()`, e.g. ~/.cache/bwloader/demo_data)."""
    env = os.environ.get("BWLOADER_DATA")
    if env:
        return Path(env).expanduser()
    from bwloader_core.demo import default_demo_dir
    return default_demo_dir()


_demo_lock = threading.Lock()


def ensure_demo_data(root: Path) -> bool:
    """Write the demo collection into `root` when it holds no bigWig file (returns True if written)."""
    root = Path(root)
    with _demo_lock:
        if root.is_dir() and any(p.suffix.lower() in BIGWIG_SUFFIXES for p in root.iterdir()):
            return False
        from bwloader_core.demo import ensure_demo_collection
        ensure_demo_collection(root)
        return True


def confine(root, path) -> Path:
    """`path` (relative to `root`, or absolute) resolved, symlinks included; refused with
    PathOutsideRootError unless it lies inside `root`."""
    root = Path(root).resolve()
    text = os.fspath(path).strip() if path is not None else ""
    p = Path(text).expanduser() if text else Path(".")
    full = (p if p.is_absolute() else root / p).resolve()
    if full != root and root not in full.parents:
        raise PathOutsideRootError(f"refused: {text or '.'!s} is outside the data root {root}")
    return full


def confine_mixture(root, spec) -> dict:
    """A regions mixture's BED paths (regions and exclude of each source) confined to the data root."""
    out = {}
    for name, src in spec.items():
        if isinstance(src, dict):
            src = {k: str(confine(root, v)) if k in ("regions", "exclude") and isinstance(v, str) and v != "all"
                   else v for k, v in src.items()}
        elif isinstance(src, str) and src != "all":
            src = str(confine(root, src))
        out[name] = src
    return out


def _is_bigwig(p: Path) -> bool:
    return p.suffix.lower() in BIGWIG_SUFFIXES


def _is_fasta(p: Path) -> bool:
    return p.name.lower().endswith(FASTA_SUFFIXES)


def scan_root(root) -> tuple[list[str], list[str]]:
    """(folders holding bigWig files, FASTA files), as paths relative to `root`; symlinks are not
    followed, the walk is bounded in depth and entries."""
    root = Path(root).resolve()
    folders, fastas, seen = [], [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        depth = len(d.relative_to(root).parts)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".")) if depth < MAX_SCAN_DEPTH else []
        seen += len(filenames) + len(dirnames)
        rel = d.relative_to(root).as_posix() or "."
        names = sorted(filenames)
        if any(_is_bigwig(Path(n)) for n in names):
            folders.append(rel)
        for n in names:
            if _is_fasta(Path(n)) and (d / n).resolve().is_relative_to(root):   # not links pointing out
                fastas.append((Path(rel) / n).as_posix())
        if seen > MAX_SCAN_ENTRIES:
            break
    return folders, fastas


def list_bigwigs(root, folder: Path) -> tuple[list[Path], list[str]]:
    """bigWig files of `folder` (resolved inside `root`) and the names of those refused (symlinks
    that point outside the data root)."""
    ok, refused = [], []
    for p in sorted(folder.iterdir()):
        if not _is_bigwig(p):
            continue
        try:
            confine(root, p)
        except PathOutsideRootError:
            refused.append(p.name)
            continue
        if p.is_file():
            ok.append(p)
    return ok, refused


def fasta_sizes(path) -> dict:
    """{name: size} of a FASTA, from its .fai (built when missing, as the loader would)."""
    from bwloader_core.sequence import ReferenceGenome
    with ReferenceGenome(path) as genome:
        return dict(genome.chrom_sizes)


TRANSCODE_SAMPLES = 8        # blocks inflated per compressed file to estimate its transcoded size


_ESTIMATES: dict = {}          # (device, inode, size, mtime) -> transcode estimate: links share one
ESTIMATES_PER_FOLDER = 64      # a folder of thousands of files estimates the first ones only


def _estimate(f, path):
    from bwloader_core.transcode import estimate_transcode
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _ESTIMATES:
        _ESTIMATES[key] = estimate_transcode(f, max_samples=TRANSCODE_SAMPLES)
    return _ESTIMATES[key]


def file_summary(path, estimate: bool = True) -> dict:
    """What the dashboard shows of one bigWig (read with bwloader's BigWigFile): its shape, whether
    its blocks are compressed and, if so (and `estimate`), what `bwloader transcode` would write and
    gain (estimated once per file: links to one file share it)."""
    from bwloader_core.transcode import speed_note
    with BigWigFile(path) as f:
        sizes = f.chrom_sizes
        out = dict(track=Path(path).stem, file=Path(path).name, size_bytes=int(f.file_size),
                   chromosomes=len(sizes), bases=int(sum(sizes.values())),
                   zoom_levels=len(f.zoom_levels), blocks=int(f.n_blocks), version=int(f.version),
                   chrom_sizes=dict(sizes), compressed=bool(f.compressed), in_place=bool(f.readable_in_place),
                   transcoded_bytes=None, transcode_note="")
        if f.compressed and not estimate:
            out["transcode_note"] = f"not estimated (only the first {ESTIMATES_PER_FOLDER} files of a folder are)"
        elif f.compressed:
            try:
                est = _estimate(f, path)
            except (OSError, ValueError):          # a corrupt block: the file is listed, the estimate is not
                return out
            gain = speed_note()
            out["transcoded_bytes"] = int(est.output_bytes)
            out["transcode_note"] = (f"transcoded: ~{est.ratio:.1f}x the disk" +
                                     (f", reads {gain.split(' samples/s')[0].lstrip('x')}x faster" if gain else ""))
        return out


class DataRootBrowser(param.Parameterized):
    """Folders of bigWig files and FASTAs under `root`; paths outside it are refused."""

    root = param.String(constant=True, doc="the data root: nothing outside it is read")
    folder = param.String(default="", doc="folder of bigWig files (relative to the data root)")
    folders = param.List(default=[], item_type=str, doc="folders with bigWig files under the root")
    fastas = param.List(default=[], item_type=str, doc="FASTA files under the root")
    tracks = param.ListSelector(default=[], objects=[], doc="selected tracks (file stems)")
    fasta = param.String(default="", doc="reference FASTA (relative to the data root; empty: none)")
    fasta_pinned = param.Boolean(default=False, doc=(
        "keep the chosen FASTA when the folder changes, as long as its chromosomes fit the new files "
        "(otherwise the folder's own FASTA, when it has exactly one, else none)"))
    summaries = param.List(default=[], doc="BigWigFile summary of each selected track")
    unreadable = param.List(default=[], doc="files of the folder that cannot be read: dicts (file, reason); not selectable")
    message = param.String(default="", doc="why a path was refused, or what was skipped")
    chrom_sizes = param.Dict(default={}, doc="chromosome sizes over the selected tracks")
    file_sizes = param.Dict(default={}, doc="chromosome sizes of each selected track's file: {path: {chrom: size}}")

    def __init__(self, root, **params):
        root = Path(root).expanduser().resolve()
        super().__init__(root=str(root), **params)
        self._paths: dict[str, Path] = {}            # track name -> resolved file (readable ones)
        self._summary: dict[str, dict] = {}          # track name -> file_summary
        self._folder_ok = None
        self._fasta_ok = ""
        self.refresh()

    def refresh(self):
        """Rescan the data root; keep the folder when it still holds bigWigs."""
        folders, fastas = scan_root(self.root) if Path(self.root).is_dir() else ([], [])
        self.param.update(folders=folders, fastas=fastas)
        if not folders:
            self.message = f"no bigWig files (*.bw, *.bigWig) under the data root {self.root}"
            return
        target = self._folder_ok or folders[0]
        self._folder_ok = None
        if self.folder == target:
            self._on_folder()
        else:
            self.folder = target

    @param.depends("folder", watch=True)
    def _on_folder(self):
        if self.folder == self._folder_ok:
            return
        try:
            full = confine(self.root, self.folder)
            if not full.is_dir():
                raise FileNotFoundError(f"{self.folder}: no such folder under the data root")
            paths, refused = list_bigwigs(self.root, full)
            if not paths:
                raise FileNotFoundError(f"{self.folder}: no bigWig files (*.bw, *.bigWig) in this folder")
        except (OSError, ValueError) as exc:
            msg = error_text(exc) if not isinstance(exc, FileNotFoundError) else str(exc)
            if self._folder_ok is not None:                # back to the last good folder
                self.folder = self._folder_ok
            self.message = msg
            return
        summary, bad = {}, []
        for i, p in enumerate(paths):                    # open each once: the unreadable are set aside
            try:
                summary[p.stem] = file_summary(p, estimate=i < ESTIMATES_PER_FOLDER)
            except (OSError, ValueError) as exc:
                bad.append(dict(file=p.name, reason=error_text(exc)))
        if not summary:
            asked = self.folder
            reasons = "; ".join(f"{b['file']}: {b['reason']}" for b in bad[:3])
            if self._folder_ok is not None:                # back to the last good folder
                self.folder = self._folder_ok
            self.message = f"{asked}: no readable bigWig file ({reasons})"
            return
        rel = full.relative_to(Path(self.root)).as_posix() or "."
        self._folder_ok = rel
        self._paths = {p.stem: p.resolve() for p in paths if p.stem in summary}
        self._summary = summary
        names = list(self._paths)
        self.param.tracks.objects = names
        notes = []
        if refused:
            notes.append(f"skipped (link pointing outside the data root): {', '.join(refused)}")
        if bad:
            notes.append("not readable, left out: " + "; ".join(f"{b['file']} ({b['reason']})" for b in bad))
        self.param.update(unreadable=bad, message="\n".join(notes))
        if self.folder != rel:
            self.folder = rel
        self._fasta_for_folder(rel)
        if self.tracks == names:
            self.param.trigger("tracks")          # same names in another folder: refresh all the same
        else:
            self.tracks = names

    def _fasta_for_folder(self, rel):
        """The FASTA of a new folder: the pinned one if its chromosomes fit the folder's files, else
        the folder's own when it has exactly one, else none."""
        if self.fasta_pinned and self.fasta and self._fasta_fits(self.fasta):
            return
        own = [f for f in self.fastas if Path(f).parent.as_posix() == rel]
        self.fasta = own[0] if len(own) == 1 else ""

    def _fasta_fits(self, fasta) -> bool:
        """Every chromosome the FASTA shares with the folder's files has their size, and they share one."""
        try:
            sizes = fasta_sizes(confine(self.root, fasta))
        except (OSError, ValueError):
            return False
        shared = 0
        for s in self._summary.values():
            for c, n in s["chrom_sizes"].items():
                if c in sizes:
                    shared += 1
                    if sizes[c] != n:
                        return False
        return shared > 0

    @param.depends("tracks", watch=True)
    def _on_tracks(self):
        summaries, sizes, per_file = [], {}, {}
        for name in self.tracks:
            s = dict(self._summary[name])
            chrom_sizes = s.pop("chrom_sizes")
            per_file[str(self._paths[name])] = chrom_sizes
            for c, n in chrom_sizes.items():
                sizes[c] = max(n, sizes.get(c, 0))
            summaries.append(s)
        self.param.update(summaries=summaries, chrom_sizes=sizes, file_sizes=per_file)

    @param.depends("fasta", watch=True)
    def _on_fasta(self):
        if not self.fasta:
            self._fasta_ok = ""
            return
        try:
            full = confine(self.root, self.fasta)
            if not full.is_file():
                raise FileNotFoundError(f"{self.fasta}: no such FASTA file under the data root")
        except (OSError, ValueError) as exc:
            self.message = str(exc)
            self.fasta = self._fasta_ok
            return
        self._fasta_ok = self.fasta

    # -- what the config needs --------------------------------------------------------------------
    def track_paths(self) -> list[str]:
        return [str(self._paths[n]) for n in self.tracks if n in self._paths]

    def track_names(self) -> list[str]:
        """The names of `track_paths()` as listed in the folder (a link keeps its own name, not its
        target's: links to the same few files stay distinct tracks)."""
        return [n for n in self.tracks if n in self._paths]

    def fasta_path(self) -> str | None:
        return str(confine(self.root, self.fasta)) if self.fasta else None

    def select_paths(self, paths: list[str], base=None):
        """Point the browser at files named by a config: all in one folder under the root."""
        if not paths:
            return
        base = Path(base or self.root)
        full = []
        for p in paths:
            q = Path(p)
            full.append(confine(self.root, q if q.is_absolute() else base / q))
        if len(full) == 1 and full[0].is_dir():
            folder, names = full[0], None
        else:
            parents = {f.parent for f in full}
            if len(parents) != 1:
                raise ValueError("the dashboard shows the tracks of one folder at a time; the config names "
                                 f"files in {len(parents)} folders")
            missing = [str(f) for f in full if not f.is_file()]
            if missing:
                raise FileNotFoundError(f"bigWig file not found: {missing[0]}")
            folder, names = parents.pop(), [f.stem for f in full]
        self.folder = folder.relative_to(Path(self.root)).as_posix() or "."
        if self._folder_ok != self.folder:
            raise ValueError(self.message or f"cannot open folder {self.folder}")
        if names is not None:
            unknown = [n for n in names if n not in self.param.tracks.objects]
            if unknown:
                raise ValueError(f"not a bigWig of folder {self.folder}: {unknown[0]}")
            self.tracks = names

"""The bwloader dashboard (Panel), shipped with the package: `pip install 'bwloader[app]'`.

- Browser: `bwloader serve --data DIR` (or `bwloader serve` for the demo collection, written once
  into the user cache folder), or `panel serve app/dashboard.py` from a source checkout.
- Jupyter: one import, and the dashboard is the cell's output::

      from bwloader_app import Dashboard
      Dashboard(data_root="/path/to/folders")     # no argument: $BWLOADER_DATA, else the demo data

Modules, one concern each: `data_root` (folders, tracks and FASTA under the data root), `stream`
(the background stream runner and its live figures), `sweep` (samples/s over batch sizes x
workers), `plot_data` (what the plots draw), `state` (one session wiring them to a LoaderConfig):
`param` models without Panel. `views` (Panel Viewers) and `dashboard` (the served page) use Panel.
Importing this package imports none of them; the names below load on first use.
"""
from __future__ import annotations

from bwloader_core import __version__

_LAZY = {
    "Dashboard": ".views",
    "DashboardState": ".state",
    "DataRootBrowser": ".data_root",
    "StreamController": ".stream",
    "SweepRunner": ".sweep",
    "build_app": ".dashboard",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'bwloader_app' has no attribute {name!r}")

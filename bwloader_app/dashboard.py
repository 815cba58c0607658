"""The served dashboard page: `build_app()` is one browser session (its own DashboardState, its own
loader thread, closed when the session ends).

`bwloader serve` runs `panel serve` on this file; `panel serve app/dashboard.py` in a source
checkout runs the same page. The data root is $BWLOADER_DATA, else the demo collection in the
user cache folder (written on first use). Everything the page loads comes from the server itself
(no CDN, no web fonts): the dashboard works on a machine without internet access.
"""
from __future__ import annotations

import sys

import panel as pn

from bwloader_app.views import ACCENT, Dashboard, LocalFast, load_extensions   # absolute: `panel serve` runs this file as a script


def build_app(data_root=None):
    """The page of one session: a FastListTemplate around a Dashboard."""
    load_extensions(session=True)
    _local_stylesheets()
    dashboard = Dashboard(data_root=data_root)
    template = pn.template.FastListTemplate(
        title="bwloader · bigWig batches, live",
        sidebar=[dashboard.sidebar],
        main=[dashboard.main],
        accent=ACCENT,
        sidebar_width=400,
        main_layout=None,
        design=LocalFast,                 # no web font: the page makes no request outside the server
        font="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        theme_toggle=False,
    )
    dashboard.start_polling()

    def _closed(session_context, _err=sys.stderr):     # module globals may be gone by then: bind what we use
        dashboard.close()
        print(f"bwloader dashboard: session {session_context.id} closed, loader stopped", file=_err, flush=True)

    pn.state.on_session_destroyed(_closed)
    return template


def _local_stylesheets():
    """Point the session's stylesheets at this server before any component is made. Panel sets
    this when it renders the page, but a session re-created for a browser that connected late
    (after the unused-session timeout) is never rendered, and its components then ask the CDN."""
    from panel.io.resources import LOCAL_DIST, use_cdn
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None or use_cdn():
        return
    rel = pn.state.rel_path
    doc.template_variables.setdefault("dist_url", f"{rel}/{LOCAL_DIST}" if rel else LOCAL_DIST)


if __name__.startswith("bokeh_app"):                  # run by `panel serve` (bwloader serve)
    build_app().servable()

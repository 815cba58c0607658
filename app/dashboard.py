"""The bwloader dashboard: `panel serve app/dashboard.py` (data root: $BWLOADER_DATA, default the
demo collection `demo_data/`, written on first use).

Each browser session gets its own DashboardState (its own loader thread), closed when the session
ends.
"""
import logging
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))   # `app` (and bwloader_core from a source checkout)

import panel as pn  # noqa: E402

from app.models import DashboardState  # noqa: E402
from app.views import ACCENT, Dashboard  # noqa: E402

log = logging.getLogger("bwloader.dashboard")

pn.extension("tabulator", notifications=False, sizing_mode="stretch_width")


def build_app():
    state = DashboardState()
    dashboard = Dashboard(state)
    template = pn.template.FastListTemplate(
        title="bwloader · bigWig batches, live",
        sidebar=[dashboard.sidebar],
        main=[dashboard.main],
        accent=ACCENT,
        sidebar_width=400,
        main_layout=None,
    )
    dashboard.start_polling()

    def _closed(session_context, _err=sys.stderr):     # module globals are gone by then: bind what we use
        dashboard.close()
        print(f"bwloader dashboard: session {session_context.id} closed, loader stopped", file=_err, flush=True)

    pn.state.on_session_destroyed(_closed)
    return template


if __name__.startswith("bokeh_app") or __name__ == "__main__":
    build_app().servable()

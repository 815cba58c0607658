"""The bwloader dashboard from a source checkout: `panel serve app/dashboard.py` (what `make demo`
runs). The page itself lives in the installed package (`bwloader_app.dashboard`, which is also what
`bwloader serve` serves); install the checkout first (`make install`, or `pip install -e '.[app]'`).
"""
from bwloader_app.dashboard import build_app

build_app().servable()

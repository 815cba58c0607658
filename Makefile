# The README's two commands: `make test` and `make demo`. Both install first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CPU build of torch (pinned for the test environment only; the package itself accepts any torch>=2.2).
TORCH_PIN := torch==2.13.0

.PHONY: install test demo bench clean chromium gpu-check

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)" || echo "warning: $(TORCH_PIN) not installable here; torch tests will skip"
	$(PY) -m pip install -q -e ".[app,dev,remote,sim]"
	touch $(STAMP)

install: $(STAMP)

# The browser tests drive the system Chromium (Playwright cannot download its own here).
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "warning: could not install Chromium; the browser tests will skip"

# Three pytest processes (scripts/test_all.py): the suite; the GPU path in numba's CUDA simulator
# (the switch must be set before numba is imported); every CUDA kernel compiled to PTX (which
# cannot share a process with the simulator). A run that collects no test fails.
test: $(STAMP) chromium
	$(PY) scripts/test_all.py

# On a machine with an NVIDIA GPU (see benchmarks/gpu_check.sh): the gpu tests and the GPU benchmark.
gpu-check:
	bash benchmarks/gpu_check.sh

DEMO_PORT ?= 5006
# The dashboard on the demo collection (written once into demo_data/).
demo: $(STAMP)
	@test -f demo_data/demo_collection.json || $(VENV)/bin/bwloader demo-data demo_data
	@echo "bwloader dashboard: http://localhost:$(DEMO_PORT)/dashboard   (Ctrl-C stops it)"
	BWLOADER_DATA=$(CURDIR)/demo_data $(VENV)/bin/panel serve app/dashboard.py --address 127.0.0.1 --port $(DEMO_PORT)

# Two steps: measure (every number into docs/scoreboard.json), then render (JSON -> Markdown + PNG).
# The scoreboard, then fixed regions against GenVarLoader (the bench extra installs it) and S4
# (thousands of tracks), all in docs/.
bench: $(STAMP)
	$(PY) -c "import genvarloader" 2>/dev/null || $(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/scoreboard.py --json docs/scoreboard.json
	$(PY) benchmarks/bench_fixed_regions.py --rounds 6 --duration 12 --json docs/fixed_regions.json --md docs/fixed_regions.md
	$(PY) benchmarks/bench_s4.py --out docs/s4
	$(PY) benchmarks/scoreboard_render.py docs/scoreboard.json --out docs/scoreboard.md --plot docs/scoreboard.png \
		--section docs/fixed_regions.md --section docs/s4.md

clean:
	rm -rf $(VENV) demo_data benchmarks/out

# The README's two commands: `make test` and `make demo`. Both install first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CPU build of torch (pinned for the test environment only; the package itself accepts any torch>=2.2).
TORCH_PIN := torch==2.13.0

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)" || echo "warning: $(TORCH_PIN) not installable here; torch tests will skip"
	$(PY) -m pip install -q -e ".[app,dev,remote]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/bwloader demo-data demo_data
	$(VENV)/bin/bwloader info demo_data/*.bw
	$(PY) benchmarks/bench_get_batch.py --data demo_data --quick

bench: $(STAMP)
	$(PY) benchmarks/bench_get_batch.py

clean:
	rm -rf $(VENV) demo_data benchmarks/out

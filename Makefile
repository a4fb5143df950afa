# vmig developer entry points.  Everything runs inside .venv (made by `make venv`).
#   make test PYTEST_ARGS='-k qemu -x'     pytest arguments
#   make bench BENCH_ARGS='--rounds 3'    tools/bench.py arguments (makes/reuses the large streams
#                                         with QEMU 10.0 in $VMIG_BENCH_DIR, default /tmp/vmig-large)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.vmig-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
DEMO_STREAM ?= fixtures/captures/qemu-10.0.2__pc-q35-8.2__ramfb+booted.bin

.PHONY: venv demo test fuzz bench golden-update clean

venv: $(STAMP)

# redone only when pyproject.toml changes (or the venv is gone)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@

demo: venv
	$(VENV)/bin/vmig decode $(DEMO_STREAM)

test: venv
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(VENV)/bin/python -m pytest -q tests/fuzz -p no:cacheprovider $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/python tools/bench.py $(BENCH_ARGS)

golden-update: venv
	$(VENV)/bin/vmig golden update fixtures/captures

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

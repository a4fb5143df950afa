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

.PHONY: venv demo test fuzz bench golden-update man dist sdist-check clean

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

# man pages from the commands' own --help: build/man/vmig.1, vmig-decode.1, ... (man -l FILE)
man: venv
	$(VENV)/bin/python tools/manpages.py build/man

# the sdist and the wheel, in dist/ (vmig is on no index: install the wheel, or `pipx install .`)
dist: venv
	rm -rf dist
	$(VENV)/bin/python -m build --no-isolation --sdist --wheel -o dist .

# the sdist is enough to test vmig: unpack it, install it with its test extras in a fresh venv
# (dependencies from the index), run the whole suite there (PYTEST_ARGS as for `make test`)
SDIST_DIR ?= /tmp/vmig-sdist-check
sdist-check: dist
	rm -rf $(SDIST_DIR) && mkdir -p $(SDIST_DIR)
	tar -xzf dist/*.tar.gz -C $(SDIST_DIR)
	cd $(SDIST_DIR)/vfio_ramfb_mig-* && $(PYTHON) -m venv .venv \
		&& .venv/bin/python -m pip install -q '.[test]' \
		&& .venv/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Set-up and entry points. Each target creates or reuses the virtual environment in $(VENV).
VENV ?= .venv
# The oldest declared versions of the core requirements (test-min-deps): a separate environment.
VENV_MIN ?= .venv-min
PYTHON ?= python3
PY := $(VENV)/bin/python
# The CPU build of PyTorch, pinned so that a fresh machine never pulls a multi-GB CUDA wheel.
TORCH_PIN ?= torch==2.13.0
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv demo test test-clone test-min-deps mutation lint format clean chromium

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $@

demo: venv
	$(VENV)/bin/streamvggt demo -o demo_output

lint: venv
	$(PY) -m ruff check src tests benchmarks tools .ci
	$(PY) -m ruff format --check src tests benchmarks tools .ci

test: lint chromium
	$(PY) -m pytest -q

# The committed tree, cloned into an empty temporary folder (no ../shared beside it), set up and tested from
# scratch as a new user would: proves the repository is self-contained. CI runs it after `make test`.
test-clone:
	@clone=$$(mktemp -d)/streamvggt && trap 'rm -rf "$$(dirname $$clone)"' EXIT && \
		git clone --quiet "$$(pwd)" "$$clone" && echo "test-clone: $$clone" && \
		$(MAKE) -C "$$clone" test PYTHON=$(PYTHON)

# The core tests (weight loading, reading inputs, the model, streaming) with every core requirement at its declared
# lower bound (.ci/floor_pins.py reads them from the package metadata). An old torch is on PyPI only as a CUDA
# build: with its NVIDIA libraries a 3 GB download, 5 GB in $(VENV_MIN) (built once per pyproject.toml change).
MIN_DEPS_TESTS := tests/test_weights.py tests/test_io_sources.py tests/test_io_preprocess.py tests/test_model.py \
	tests/test_stream.py
test-min-deps: $(VENV_MIN)/.installed
	$(VENV_MIN)/bin/python -m pytest -q -p no:cacheprovider $(MIN_DEPS_TESTS)

$(VENV_MIN)/.installed: pyproject.toml .ci/floor_pins.py
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_MIN)/bin/python -m pip install --quiet --no-deps -e .
	$(VENV_MIN)/bin/python .ci/floor_pins.py > $(VENV_MIN)/floors.txt
	$(VENV_MIN)/bin/python -m pip install --quiet --constraint $(VENV_MIN)/floors.txt -e ".[test]"
	$(VENV_MIN)/bin/python .ci/floor_pins.py --check
	touch $@

# Plant hand-written faults in a copy of src/ (cache, stream, geometry); fails unless the tests catch every one
# (docs/testing.md holds the last result table).
mutation: venv
	$(PY) tools/mutation_check.py

format: venv
	$(PY) -m ruff check --fix src tests benchmarks tools .ci
	$(PY) -m ruff format src tests benchmarks tools .ci

# Headless Chromium for the viewer's browser test: Debian's package (Playwright drives it; no browser download).
# A failed install is a warning, not a failed build: the browser test then skips and says why.
chromium:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: /usr/bin/chromium"; else \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium) || \
		echo "warning: could not install chromium; the viewer's browser test will be skipped"; fi

clean:
	rm -rf $(VENV) $(VENV_MIN) .pytest_cache .ruff_cache

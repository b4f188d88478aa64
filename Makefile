# make install: .venv with torch first (pinned, overridable), then xmt with its dev extras.
# make test: install + the test suite.   make reproduce: install + `xmt reproduce` (the main job).
# make studies: install + the transfer studies (experiments/studies/transfer-*.yaml; resumable).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
BIN := $(VENV)/bin

# grid cells trained at a time by make reproduce and make studies (2 fits a 2-core machine)
JOBS ?= 2
# the transfer studies: results root, and the order they run in (the chosen point first: its runs
# are every other study's default level)
STUDY_RESULTS ?= results
STUDIES ?= point width renders templates direction bridge plain-shapes categories text-priors
.PHONY: install test test-fast reproduce studies lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	# torchscale 0.3.0 (the library Kosmos-1 was built on) is the reference of the decoder parity test;
	# only its pure-PyTorch modules are used, so its fairscale/timm requirements are not installed.
	$(BIN)/pip install --quiet --no-deps torchscale==0.3.0

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

reproduce: install
	$(BIN)/xmt reproduce --jobs $(JOBS)

studies: install
	for s in $(STUDIES); do \
		$(BIN)/xmt grid run experiments/studies/transfer-$$s.yaml --jobs $(JOBS) --results $(STUDY_RESULTS) || exit 1; \
	done
	$(BIN)/xmt paper build --results $(STUDY_RESULTS) --out $(STUDY_RESULTS)/paper --allow-empty

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# make install: .venv with torch first (pinned, overridable), then xmt with its dev extras.
# make test: install + the test suite.   make reproduce: install + `xmt reproduce` (the main job).
# make studies: install + the transfer studies (experiments/studies/transfer-*.yaml; resumable).
# make study-results: their summaries (docs/studies/transfer-<study>*.csv, -curve.md) and the gallery's
#   fig_transfer_phase, from the studies that have results under STUDY_RESULTS.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
BIN := $(VENV)/bin

# grid cells trained at a time by make reproduce and make studies (2 fits a 2-core machine)
JOBS ?= 2
# make reproduce's budget (xmt reproduce --scale): smoke, tiny, half or calibrated
SCALE ?= tiny
# the transfer studies: results root, and the order they run in (the chosen point first: its runs
# are every other study's default level)
STUDY_RESULTS ?= results
STUDIES ?= point width renders templates direction bridge plain-shapes categories text-priors
.PHONY: install test test-fast reproduce studies study-results lint clean

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
	$(BIN)/xmt reproduce --scale $(SCALE) --jobs $(JOBS)

studies: install
	for s in $(STUDIES); do \
		$(BIN)/xmt grid run experiments/studies/transfer-$$s.yaml --jobs $(JOBS) --results $(STUDY_RESULTS) || exit 1; \
	done
	$(BIN)/xmt paper build --results $(STUDY_RESULTS) --out $(STUDY_RESULTS)/paper --allow-empty

# per study: every comparison over the evaluated steps (-curve), what each arm learned at the end and
# at steps 450 and 900 (-step-N); a study with no results yet is passed over
study-results: install
	for s in $(STUDIES); do \
		g=experiments/studies/transfer-$$s.yaml; o=docs/studies/transfer-$$s; \
		[ -d $(STUDY_RESULTS)/transfer-$$s ] || { echo "transfer-$$s: no results under $(STUDY_RESULTS), passed over"; continue; }; \
		$(BIN)/xmt grid curve $$g --results $(STUDY_RESULTS) --eval world-colour --eval world-size \
			--eval world-colour-latent --group vision_only --out $$o-curve.csv --out $$o-curve.md || exit 1; \
		$(BIN)/xmt grid learnability $$g --results $(STUDY_RESULTS) --out $$o.csv || exit 1; \
		for n in 450 900; do \
			$(BIN)/xmt grid learnability $$g --results $(STUDY_RESULTS) --step $$n --out $$o-step-$$n.csv || exit 1; \
		done; \
	done
	$(BIN)/xmt paper build --results $(STUDY_RESULTS) --out $(STUDY_RESULTS)/paper --allow-empty
	cp $(STUDY_RESULTS)/paper/fig_transfer_phase.png $(STUDY_RESULTS)/paper/fig_transfer_phase.csv $(STUDY_RESULTS)/paper/fig_transfer_phase.md docs/gallery/

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

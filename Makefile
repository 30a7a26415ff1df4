# Two commands for a newcomer (Python 3.11):
#   make run    set up .venv (the runtime only: no TensorFlow) and launch the dashboard on the bundled models
#   make test   set up .venv (runtime, TensorFlow for training, test tools, and the Debian packages the tests
#               drive) and run the whole test suite
# make litert-models re-exports the shipped LiteRT models (models/*.tflite) from the .keras files.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast setup setup-train setup-dev lean-venv test-packages benchmarks litert-models lock

# Installs come from the hash-locked files (every package, transitive ones included, pinned with its SHA-256):
# requirements.lock (runtime), requirements-train.lock (+ TensorFlow), requirements-scale.lock (+ Ray, for `score
# --engine ray` workers), requirements-dev.lock (all of them + test tools).
# The *.txt files name the direct dependencies; `make lock` compiles the locks from them (docs/security.md).
# pip's own upgrade is skipped on purpose: it would be the one unpinned download. The runtime is installed with
# --no-compile: Python writes the bytecode of what actually runs on first import, instead of pip compiling every
# module of every package (80 MB of bytecode for code the workbench never imports; docs/benchmarks.md).
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header -q

$(BIN)/.runtime: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "Installing requirements.lock into $(VENV) (the runtime, no TensorFlow, every file hash-checked: a few minutes the first time)..."
	$(BIN)/python -m pip install -q --no-compile --require-hashes -r requirements.lock
	@echo "Installing the project itself (editable: the pneumo command)..."
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# TensorFlow and Keras: training, export, ensembles, the Keras backend (and the tests of all of them).
$(BIN)/.train: $(BIN)/.runtime requirements-train.lock
	@echo "Installing requirements-train.lock (TensorFlow and Keras: about 1.4 GB more)..."
	$(BIN)/python -m pip install -q --require-hashes -r requirements-train.lock
	touch $@

$(BIN)/.dev: $(BIN)/.train requirements-dev.lock
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
	touch $@

# A second venv from requirements.txt alone (no TensorFlow, no test tools): tests/browser/test_lean_runtime.py
# runs the CLI and the dashboard from it, so a runtime import of TensorFlow cannot hide behind the test venv.
LEAN := .venv-lean
$(LEAN)/bin/.runtime: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(LEAN)
	$(LEAN)/bin/python -m pip install -q --no-compile --require-hashes -r requirements.lock
	$(LEAN)/bin/python -m pip install -q --no-deps -e .
	touch $@

lean-venv: $(LEAN)/bin/.runtime

setup: $(BIN)/.runtime
setup-train: $(BIN)/.train
setup-dev: $(BIN)/.dev test-packages

# The shipped LiteRT models (float32, the runtime's default backend) from the shipped .keras files: each export
# writes models/<variant>.tflite and its .tflite.json sidecar (which names the detector models/reports/<variant>/ood.npz,
# no copy), and records the .tflite in models/MANIFEST.json.
litert-models: setup-train
	for v in finetuned frozen; do $(BIN)/python -m pneumo_core export --model $$v || exit 1; done

# Real components the tests drive, from Debian: Chromium (browser tests; Playwright cannot download
# its own browsers offline), DCMTK and GDCM (compressed DICOMs), Orthanc with its DICOMweb plugin (the
# PACS) and PostgreSQL (the quiz database). Installed when missing and apt-get is there; without them
# those tests skip with a reason (and fail under CI, PNEUMO_REQUIRE_DATA=1).
TEST_PACKAGES := chromium dcmtk libgdcm-tools orthanc orthanc-dicomweb postgresql
test-packages:
	@missing=$$(for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  [ -z "$$missing" ] || { command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
	  echo "could not install $$missing: the tests that need them will be skipped"

run: setup
	$(BIN)/streamlit run app.py

test: setup-dev lean-venv
	$(BIN)/ruff check .
	PNEUMO_LEAN_PYTHON=$(CURDIR)/$(LEAN)/bin/python $(BIN)/python -m pytest --durations=15  # the slowest tests, to keep CI under 30 min

# The fast loop while working (no browser, PACS, DICOM-tool or database tests, none marked slow): a few minutes.
test-fast: setup-dev
	$(BIN)/python -m pytest -m "(unit or pages) and not slow and not browser" -q

benchmarks: setup-dev
	for f in benchmarks/[a-z]*.py; do $(BIN)/python -m benchmarks.$$(basename $$f .py) || exit 1; done

# Re-lock after editing a requirements*.txt file (needs uv, from requirements-dev.txt): each lock is constrained
# by the one below it, so the runtime's versions are the same in all three.
lock: $(BIN)/.dev
	$(BIN)/uv pip compile requirements.txt $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile requirements.txt requirements-train.txt -c requirements.lock $(LOCK_FLAGS) -o requirements-train.lock
	$(BIN)/uv pip compile requirements.txt requirements-scale.txt -c requirements.lock $(LOCK_FLAGS) -o requirements-scale.lock
	$(BIN)/uv pip compile requirements.txt requirements-train.txt requirements-scale.txt requirements-dev.txt \
	  -c requirements-train.lock -c requirements-scale.lock $(LOCK_FLAGS) -o requirements-dev.lock

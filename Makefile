# Two commands for a newcomer (Python 3.11):
#   make run    set up .venv and launch the dashboard on the bundled models
#   make test   set up .venv (with test tools, and the Debian packages the tests drive) and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast setup setup-dev test-packages benchmarks

$(BIN)/.runtime: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "Installing requirements.txt into $(VENV) (about 2.4 GB the first time; a few minutes)..."
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	@echo "Installing the project itself (editable: the pneumo command)..."
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

setup: $(BIN)/.runtime
setup-dev: $(BIN)/.dev test-packages

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

test: setup-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The fast loop while working (no browser, PACS, DICOM-tool or database tests, none marked slow): a few minutes.
test-fast: setup-dev
	$(BIN)/python -m pytest -m "(unit or pages) and not slow" -q

benchmarks: setup-dev
	for f in benchmarks/[a-z]*.py; do $(BIN)/python -m benchmarks.$$(basename $$f .py) || exit 1; done

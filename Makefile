# Two commands for a newcomer (Python 3.11):
#   make run    set up .venv and launch the dashboard on the bundled models
#   make test   set up .venv (with test tools and Chromium) and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test setup setup-dev chromium dicom-tools benchmarks

$(BIN)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	@echo "Installing requirements.txt into $(VENV) (about 2.4 GB the first time; a few minutes)..."
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

setup: $(BIN)/.runtime
setup-dev: $(BIN)/.dev chromium

# Browser tests drive Debian's Chromium (Playwright cannot download its own browsers offline).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: browser tests will be skipped"

# DICOM tests use Debian's DCMTK and GDCM encoders and a real Orthanc PACS with its DICOMweb plugin;
# without them those tests skip (and fail under CI). .ci/run calls this before `make test`.
DICOM_PACKAGES := orthanc orthanc-dicomweb dcmtk libgdcm-tools
dicom-tools:
	@missing=$$(for p in $(DICOM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  [ -z "$$missing" ] || { command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
	  echo "could not install $$missing: DICOM compression and PACS tests will be skipped"

run: setup
	$(BIN)/streamlit run app.py

test: setup-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

benchmarks: setup-dev
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

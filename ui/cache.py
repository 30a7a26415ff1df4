"""Cached loaders the pages share: report files, model files and their hashes, predictors and the bound on
scoring at once across sessions, the saved-score curves, example films.

Report-derived values are keyed by the report files' signature (names, sizes, mtimes), so a
retrained or re-evaluated model shows up on the next rerun; models load once per server process.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import streamlit as st

from pneumo_core.config import MODELS_DIR, dashboard_limit, model_path
from pneumo_core.errors import first_line
from pneumo_core.evaluation import reports
from pneumo_core.review import examples


# cache_resource, not cache_data: the reports are read, never changed, and cache_data would
# unpickle a copy of every table on each rerun (about 10 ms a rerun).
@st.cache_resource(show_spinner=False, max_entries=4)
def _load_reports_cached(models_dir: str, signature: tuple) -> dict:
    return reports.load_reports(Path(models_dir))


def get_reports() -> dict[str, reports.VariantReport]:
    """Every shipped variant's reports; reloaded automatically when a model or report file changes."""
    return _load_reports_cached(str(MODELS_DIR), reports.files_signature(MODELS_DIR))


def available(reps: dict) -> dict:
    """The variants whose model and reports are all present."""
    return {v: r for v, r in reps.items() if r.available}


def show_missing(reps: dict) -> None:
    """A note for each variant that is not available yet, saying what is missing."""
    for rep in reps.values():
        if not rep.available:
            st.info(rep.status_message(), icon=":material/hourglass_empty:")


def evaluated_reports_or_stop(empty_message: str) -> dict:
    """The evaluated variants' reports; notes the missing ones, and stops the page when none is ready."""
    reps = get_reports()
    show_missing(reps)
    ready = available(reps)
    if not ready:
        st.error(empty_message)
        st.stop()
    return ready


@st.cache_data(show_spinner=False, max_entries=8)
def _file_sha256_cached(path: str, mtime_ns: int) -> str:
    from pneumo_core.artifacts import sha256_file

    return sha256_file(path)


def file_sha256(path: Path) -> str:
    """SHA-256 of a model file, hashed once per file version (path and mtime)."""
    return _file_sha256_cached(str(path), Path(path).stat().st_mtime_ns)


def model_file(variant: str) -> Path:
    """The shipped model file of ``variant`` that the pages run, in the models folder they read: its LiteRT export
    (``<variant>.tflite``) or its ``.keras`` file, as ``PNEUMO_BACKEND`` (else what is installed) says."""
    from pneumo_core.inference.backends import choose_kind

    return model_path(variant, MODELS_DIR, ".tflite" if choose_kind(variant) == "litert" else ".keras")


@st.cache_resource(show_spinner=False, max_entries=2)
def load_predictor(variant: str, mtime_ns: int, path: str | None = None):
    """The shipped model ``variant`` (its file ``path``, default :func:`model_file`) as loaded once per server
    process and file version (``mtime_ns``); every page (Analyse, the quiz review) shares this one copy, and
    several sessions use it at once (LiteRT: a pool of interpreters, docs/design.md). Raises when the file cannot
    be loaded."""
    from pneumo_core.inference.predictor import Predictor

    return Predictor(path or model_file(variant), use="serve")


def get_predictor(variant: str):
    """The shipped model ``variant``, loaded once per server process: (predictor, None) or (None, the one line
    that says what is wrong and how to fix it)."""
    from pneumo_core.errors import ModelLoadError

    if not model_path(variant, MODELS_DIR).is_file() and not model_path(variant, MODELS_DIR, ".tflite").is_file():
        return None, reports.load_report(variant, MODELS_DIR).status_message()
    name = variant
    try:
        path = model_file(variant)
        name = path.name
        mtime = path.stat().st_mtime_ns if path.is_file() else 0  # a missing file is explained by the load
        with st.spinner(f"Loading the {reports.display_name(variant)} (once per server)..."):
            return load_predictor(variant, mtime, str(path)), None
    except ModelLoadError as exc:  # says which file and the fix
        return None, f"Could not load {name}: {first_line(exc, limit=400)}"
    except Exception as exc:  # a bad model file must not crash the page
        return None, f"Could not load {name}: {type(exc).__name__}: {first_line(exc)}"


@st.cache_resource(show_spinner=False)
def _scoring_slots(limit: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(limit)


#: A film's ``error`` when every scoring slot stayed taken: not kept, so the next rerun tries again.
BUSY = "not scored yet: the server is busy scoring films for other sessions. It is scored when you next use the page"


@contextmanager
def scoring_slot():
    """One of the server's ``PNEUMO_MAX_SCORING`` slots for scoring one film, shared by every session; yields
    False when none came free within ``PNEUMO_SCORING_WAIT_S`` (the caller says the film was not scored). A
    session that has to wait says so on the page while it waits."""
    limit = dashboard_limit("PNEUMO_MAX_SCORING")
    slots = _scoring_slots(limit)
    got = slots.acquire(blocking=False)
    if not got:
        note = st.empty()
        note.info(f"Waiting for a free slot: this server scores at most {limit} films at once, for all sessions.",
                  icon=":material/hourglass_empty:")
        got = slots.acquire(timeout=dashboard_limit("PNEUMO_SCORING_WAIT_S"))
        note.empty()
    try:
        yield got
    finally:
        if got:
            slots.release()


class BoundedPredictor:
    """A predictor whose ``predict`` takes a :func:`scoring_slot` (a film left unscored says :data:`BUSY`);
    everything else is the predictor's own."""

    def __init__(self, predictor):
        self._predictor = predictor

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def predict(self, source, name: str | None = None, **options):
        from pneumo_core.inference.prediction import Prediction

        with scoring_slot() as free:
            if free:
                return self._predictor.predict(source, name=name, **options)
        return Prediction(file=name or "upload", threshold=self.threshold, model=self.name, error=BUSY)


@st.cache_data(show_spinner=False, max_entries=64)
def _confusion_cached(variant: str, threshold: float, signature: tuple) -> dict:
    return reports.confusion_at(get_reports()[variant], threshold)


def confusion(variant: str, threshold: float) -> dict:
    """Test-split metrics and confusion matrix at ``threshold`` from the saved scores (cached)."""
    return _confusion_cached(variant, float(threshold), reports.files_signature(MODELS_DIR))


@st.cache_data(show_spinner=False, max_entries=8)
def _curves_cached(variant: str, signature: tuple) -> tuple[pd.DataFrame, float]:
    pr = reports.pr_curve(get_reports()[variant])
    return pr, pr.attrs["average_precision"]


def curves(variant: str) -> tuple[pd.DataFrame, float]:
    """(precision-recall curve, average precision) of the saved test scores (cached). Reliability comes from each
    model's calibration.json, not from these scores."""
    return _curves_cached(variant, reports.files_signature(MODELS_DIR))


@st.cache_resource(show_spinner=False, max_entries=4)  # read only: shared, not copied per rerun
def example_films(source: str | None) -> pd.DataFrame:
    """The example films of ``source`` (None: the bundled teaching set; else a dataset root),
    with their truth (see ``pneumo_core.review.examples.example_films``)."""
    return examples.example_films(source, models_dir=MODELS_DIR)


@st.cache_data(show_spinner=False, max_entries=4, ttl=60)  # a dataset folder mounted later shows up
def example_sources(root: str) -> list[tuple[str, str | None]]:
    """(label, source) pairs of the example picker: the bundled set, and ``root``'s test split if any."""
    return examples.sources(root)

"""The dashboard runs at model speed: Streamlit's reruns keep TensorFlow's kernels.

After every script run Streamlit's script runner calls ``keras.backend.clear_session()``, which
clears TensorFlow's kernel cache, so each rerun's first model call rebuilt its kernels (about
20 times the model call itself). ``ui.runtime.keep_kernels_between_reruns`` (called by app.py)
removes that one step. These tests check it directly (no wall-clock limits: the machine running
them may be loaded); ``benchmarks/dashboard.py`` measures the times.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from streamlit.runtime.scriptrunner import script_runner
from streamlit.testing.v1 import AppTest

from tests.support import require
from ui import runtime

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
TIMEOUT = 300  # first model load on a busy 2-core machine


@pytest.fixture
def cleanup_as_shipped(monkeypatch):
    """Streamlit's own post-run cleanup, as if this process had never run app.py."""
    current = getattr(script_runner, runtime.CLEANUP_NAME)
    monkeypatch.setattr(script_runner, runtime.CLEANUP_NAME, getattr(current, "__wrapped__", current))
    return getattr(script_runner, runtime.CLEANUP_NAME)


@pytest.fixture
def clear_session_calls(monkeypatch) -> list:
    """Every call of ``keras.backend.clear_session`` made while the test runs (then passed on)."""
    import keras

    calls = []
    original = keras.backend.clear_session

    def recording(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(keras.backend, "clear_session", recording)
    return calls


def film(name: str) -> tuple[str, bytes, str]:
    return name, (EXAMPLES / name).read_bytes(), "image/jpeg"


def test_streamlit_cleanup_clears_keras_unless_changed(cleanup_as_shipped, clear_session_calls):
    """The recorder sees Streamlit's call, so the app test below can fail."""
    cleanup_as_shipped()
    assert len(clear_session_calls) == 1, "Streamlit's cleanup no longer clears Keras: revisit ui/runtime.py"
    assert not runtime.kernels_kept()


def test_keep_kernels_is_narrow_and_idempotent(cleanup_as_shipped, clear_session_calls, monkeypatch):
    closed = []  # a stand-in for matplotlib.pyplot (not installed): Streamlit closes its figures
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", types.SimpleNamespace(close=closed.append))
    assert runtime.keep_kernels_between_reruns() and runtime.keep_kernels_between_reruns()
    changed = getattr(script_runner, runtime.CLEANUP_NAME)
    assert runtime.kernels_kept() and changed.__wrapped__ is cleanup_as_shipped  # not wrapped twice
    changed()
    assert clear_session_calls == [], "the Keras step must be skipped"
    assert closed == ["all"], "Streamlit's other cleanup (matplotlib figures) must still run"


def test_app_reruns_keep_tensorflow_kernels(cleanup_as_shipped, clear_session_calls):
    """Upload one film, then another (a rerun): Streamlit's cleanup never clears Keras."""
    require((ROOT / "models" / "finetuned.keras").is_file(), "shipped model models/finetuned.keras needed")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/analyse.py")
    at.run()
    for name in ("ex01.jpeg", "ex02.jpeg"):
        at.file_uploader(key="uploads").set_value([film(name)])
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    assert [m.label for m in at.metric].count("P(pneumonia)") == 1, "the second film was not scored"
    assert runtime.kernels_kept(), "app.py must call ui.runtime.keep_kernels_between_reruns()"
    assert clear_session_calls == [], f"keras.backend.clear_session ran {len(clear_session_calls)} times in reruns"

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

from tests.helpers.support import require
from ui import runtime

ROOT = Path(__file__).resolve().parents[2]
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


def test_rerun_path_does_no_repeat_work(monkeypatch):
    """Eight films uploaded, then the threshold and the opacity moved: no film is read, hashed,
    scored or encoded again except the overlays at the new opacity; six studies are drawn at a time."""
    require((ROOT / "models" / "finetuned.keras").is_file(), "shipped model models/finetuned.keras needed")
    from pneumo_core.inference.predictor import Predictor
    from ui import study, uploads

    calls = {"hash": 0, "predict": 0, "encode": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(uploads, "film_of", counted("hash", uploads.film_of))
    monkeypatch.setattr(study, "encode_jpeg", counted("encode", study.encode_jpeg))
    monkeypatch.setattr(Predictor, "predict", counted("predict", Predictor.predict))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("app_pages/analyse.py")
    at.run()
    names = [f"ex{i:02d}.jpeg" for i in range(1, 9)]
    at.file_uploader(key="uploads").set_value([film(n) for n in names])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = 6  # one page of studies: original + overlay encoded for each of them, and every original
    assert calls == {"hash": 8, "predict": 8, "encode": 8 + shown}
    assert [m.label for m in at.metric].count("P(pneumonia)") == shown
    assert len(at.dataframe[0].value) == 8, "the review table lists every film"
    at.slider(key="thr_finetuned").set_value(0.2).run()
    assert calls == {"hash": 8, "predict": 8, "encode": 8 + shown}, "a threshold move redid work"
    at.slider(key="alpha").set_value(0.6).run()
    assert calls == {"hash": 8, "predict": 8, "encode": 8 + 2 * shown}, "only the new overlays are encoded"
    at.radio(key="study_page").set_value(6).run()
    assert [m.label for m in at.metric].count("P(pneumonia)") == 2
    assert not at.exception, [e.value for e in at.exception]

"""The dashboard on the shipped LiteRT models: a damaged export is one error line on the Analyse page, naming the
file and the fix (never a traceback, never another model in its place), and the page follows PNEUMO_BACKEND."""
from __future__ import annotations

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def frozen_only(tmp_path: Path, damage: bool) -> Path:
    """A models folder with the frozen model: .keras and reports linked, its export copied (one byte flipped when
    ``damage``), the shipped manifest copied."""
    d = tmp_path / "models"
    (d / "reports").mkdir(parents=True)
    (d / "frozen.keras").symlink_to(MODELS / "frozen.keras")
    (d / "reports" / "frozen").symlink_to(MODELS / "reports" / "frozen", target_is_directory=True)
    for name in ("frozen.tflite", "frozen.tflite.json", "MANIFEST.json"):
        shutil.copy(MODELS / name, d)
    if damage:
        blob = bytearray((d / "frozen.tflite").read_bytes())
        blob[len(blob) // 3] ^= 0xFF
        (d / "frozen.tflite").write_bytes(bytes(blob))
    return d


def analyse_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/analyse.py")
    at.run()
    return at


def test_a_damaged_export_is_one_error_line_on_the_page(tmp_path, monkeypatch):
    from ui import cache

    monkeypatch.delenv("PNEUMO_BACKEND", raising=False)
    monkeypatch.setattr(cache, "MODELS_DIR", frozen_only(tmp_path, damage=True))
    at = analyse_page()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert errors[0].startswith("Could not load frozen.tflite: models/frozen.tflite does not match the SHA-256 in "
                                "MANIFEST.json") and "git checkout models/" in errors[0], errors[0]
    assert not at.file_uploader, "no uploader: nothing may be scored by another model"


def test_an_unlisted_export_is_refused_on_the_page(tmp_path, monkeypatch):
    """Fail closed: an export its manifest does not list is refused, naming the file and the fix."""
    import json

    from ui import cache

    monkeypatch.delenv("PNEUMO_BACKEND", raising=False)
    models = frozen_only(tmp_path, damage=False)
    manifest = json.loads((models / "MANIFEST.json").read_text())
    del manifest["models"]["frozen.tflite"]
    (models / "MANIFEST.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(cache, "MODELS_DIR", models)
    at = analyse_page()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "models/frozen.tflite is not listed in MANIFEST.json" in errors[0], errors
    assert "manifest --dir" in errors[0] and str(tmp_path) not in errors[0]
    assert not at.file_uploader, "no uploader: nothing may be scored by another model"


def test_the_page_follows_the_backend_setting(tmp_path, monkeypatch, test_pneumonia):
    from ui import cache

    monkeypatch.setattr(cache, "MODELS_DIR", frozen_only(tmp_path, damage=False))
    for backend in ("litert", "keras"):
        monkeypatch.setenv("PNEUMO_BACKEND", backend)
        assert cache.model_file("frozen").name == ("frozen.tflite" if backend == "litert" else "frozen.keras")
        at = analyse_page()
        at.file_uploader(key="uploads").set_value([(test_pneumonia.name, test_pneumonia.read_bytes(), "image/jpeg")])
        at.run()
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        assert [m.label for m in at.metric].count("P(pneumonia)") == 1
        predictor, error = cache.get_predictor("frozen")  # the copy the page used (cached per server)
        assert error is None and predictor.backend.kind == backend and predictor.path.parent == cache.MODELS_DIR

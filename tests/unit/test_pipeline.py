"""The one inference pipeline (pneumo_core.inference.predictor): immutable results, results at the
display size a page asks for with the heatmap computed straight from the 7x7 map at that shape, one
decode per file, and the lazy top-level API (``from pneumo_core import Predictor``)."""
from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pneumo_core.inference.gradcam import normalise_heatmap
from pneumo_core.inference.prediction import Prediction, display_shape
from pneumo_core.inference.preprocess import model_input
from tests.helpers.dicom_files import dx_film, grey


def jpeg(pixels: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def large_film(test_pneumonia) -> bytes:
    """A test film enlarged to 1500 x 1300 px (the split's films are 224 px), as a JPEG upload."""
    return jpeg(np.asarray(Image.fromarray(grey(test_pneumonia)).resize((1300, 1500), Image.BICUBIC)))


# ---------------------------------------------------------------- an immutable result
def test_a_prediction_cannot_be_mutated(shipped_predictor, large_film):
    pred = shipped_predictor.predict(large_film, name="film.jpeg", explain=True, display_size=300)
    assert pred.error is None and pred.film is not None and pred.heatmap is not None
    for name, value in (("label", "NORMAL"), ("p_pneumonia", 0.0), ("error", "x"), ("notes", []), ("heatmap", None),
                        ("film", None), ("file", "other.png")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(pred, name, value)
    assert isinstance(pred.notes, tuple) and not hasattr(pred.notes, "append")
    with pytest.raises(ValueError, match="read-only"):
        pred.heatmap[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        pred.film.pixels[0, 0] = 0
    # derived copies: dataclasses.replace, the original untouched; any iterable of notes becomes a tuple
    renamed = dataclasses.replace(pred, file="renamed.jpeg", notes=[*pred.notes, "a note"])
    assert renamed.file == "renamed.jpeg" and renamed.notes == (*pred.notes, "a note") and pred.file == "film.jpeg"
    assert renamed.heatmap is pred.heatmap or np.array_equal(renamed.heatmap, pred.heatmap)
    assert Prediction(file="a.png", notes=["x"]).notes == ("x",)


def test_to_json_keeps_the_cli_fields_exactly(shipped_predictor, large_film):
    pred = shipped_predictor.predict(large_film, name="film.jpeg", explain=True, display_size=300)
    out = pred.to_json()
    assert list(out) == ["file", "label", "p_pneumonia", "threshold", "is_chest_xray", "ood_distance", "model",
                         "error", "notes"]
    assert isinstance(out["notes"], list) and out == shipped_predictor.predict(large_film, name="film.jpeg").to_json()


# ---------------------------------------------------------------- results at the display size
@pytest.mark.parametrize("display_size", [768, 500, 97])
def test_results_come_back_at_the_display_size_with_the_heatmap_at_that_shape(shipped_predictor, large_film,
                                                                              display_size):
    full = shipped_predictor.predict(large_film, name="film.jpeg")
    pred = shipped_predictor.predict(large_film, name="film.jpeg", explain=True, display_size=display_size)
    assert pred.error is None and pred.film.original_shape == (1500, 1300)
    assert max(pred.film.pixels.shape[:2]) == display_size
    assert pred.film.pixels.shape[:2] == display_shape((1500, 1300), display_size)
    assert pred.heatmap.shape == pred.film.pixels.shape[:2] and pred.heatmap.dtype == np.float16
    assert pred.image.shape == (*pred.heatmap.shape, 3) and pred.image.dtype == np.uint8
    # the display size changes what is shown, never the score
    assert (pred.label, pred.p_pneumonia, pred.ood_distance) == (full.label, full.p_pneumonia, full.ood_distance)


def test_a_film_is_never_enlarged_and_none_means_as_decoded(shipped_predictor, test_normal):
    small = shipped_predictor.predict(test_normal, explain=True, display_size=1024)
    assert small.film.pixels.shape[:2] == small.heatmap.shape == (224, 224)
    assert shipped_predictor.predict(test_normal, explain=True).heatmap.shape == (224, 224)
    kept = shipped_predictor.predict(test_normal, keep_image=True, display_size=100)
    assert max(kept.film.pixels.shape[:2]) == 100 and kept.heatmap is None
    assert shipped_predictor.predict(test_normal).film is None  # nothing kept unless asked


def test_a_page_sized_heatmap_is_the_7x7_map_resized_once(shipped_predictor, large_film):
    """The heatmap at the display size equals the raw 7x7 Grad-CAM map upsampled straight to that shape
    (within float16 rounding), not a full-size map shrunk again."""
    from pneumo_core.imaging.decode import load_image

    pred = shipped_predictor.predict(large_film, name="film.jpeg", explain=True, display_size=768)
    _, cam, _ = shipped_predictor.explain_arrays(model_input(load_image(large_film, "film.jpeg"))[None])
    direct = normalise_heatmap(cam[0], pred.heatmap.shape)
    assert direct.std() > 0.05, "the map must vary for the comparison to mean anything"
    np.testing.assert_allclose(pred.heatmap.astype(np.float32), direct, rtol=0, atol=1e-3)


def test_a_12_bit_film_keeps_its_values_to_window_at_the_display_shape(shipped_predictor, test_pneumonia):
    """A DICOM film's display copy carries its 12-bit values shrunk to the same shape, so the viewer's
    windows line up with the heatmap."""
    from pneumo_core.imaging.windowing import window_presets, windowed

    big = np.asarray(Image.fromarray(grey(test_pneumonia)).resize((1000, 1200), Image.BICUBIC))
    pred = shipped_predictor.predict(dx_film(big), name="film.dcm", explain=True, display_size=600)
    film = pred.film
    assert pred.error is None and film.bit_depth == 12 and film.dicom is not None
    assert film.pixels.shape[:2] == film.raw.shape[:2] == pred.heatmap.shape == (600, 500)
    assert film.raw.max() > 255, "the 12-bit values, not the 8-bit display pixels"
    presets = window_presets(film)
    assert {"full range (min-max)", "lung", "bone"} <= {p.name for p in presets}
    full = windowed(film, next(p for p in presets if p.name.startswith("full range")))
    assert full.shape == pred.heatmap.shape
    assert np.corrcoef(full.ravel(), np.asarray(film.pixels, float).ravel())[0, 1] > 0.99


# ---------------------------------------------------------------- decode once
def test_a_bad_file_is_decoded_once_and_its_reason_returned(shipped_predictor, monkeypatch, large_film):
    from pneumo_core.inference import predictor as pipeline

    calls = []
    real = pipeline.load_image

    def counting(data, name=None):
        calls.append(name)
        return real(data, name)

    monkeypatch.setattr(pipeline, "load_image", counting)
    bad = shipped_predictor.predict(b"this is plain text, not an image\n" * 4, name="x.png", explain=True,
                                    display_size=768)
    assert calls == ["x.png"] and bad.error == "file is plain text, not an image"
    assert bad.label is None and bad.film is None and bad.heatmap is None
    good = shipped_predictor.predict(large_film, name="y.jpeg", explain=True, display_size=768)
    assert calls == ["x.png", "y.jpeg"] and good.error is None


def test_the_dashboard_modules_never_decode_shrink_or_change_predictions():
    """ui.study scores films through the predictor alone: no decoder, no resizing, no writes to a prediction."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for relative in ("ui/study.py", "ui/quiz_results.py", "ui/pacs_source.py", "app_pages/analyse.py"):
        text = (root / relative).read_text()
        for banned in ("load_image", "load_path", "cv2.resize", "_shrink", "notes.append"):
            assert banned not in text, f"{relative} contains {banned!r}"
        # an assignment to a prediction's field (a comparison such as ``pred.error == BUSY`` is fine)
        written = re.findall(r"\bpred\.(?:image|heatmap|error)\s*=(?!=)|\.error\s*=(?!=)", text)
        assert not written, f"{relative} writes to a prediction: {written}"


# ---------------------------------------------------------------- the public entry point
def test_the_top_level_api_loads_lazily():
    """``from pneumo_core import Predictor`` works; importing the package or its decoders loads no TensorFlow."""
    code = ("import sys, pneumo_core, pneumo_core.imaging.decode\n"
            "from pneumo_core import Predictor, Prediction, ImageError, ModelLoadError, load_image, LoadedImage\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'\n"
            "assert Predictor.__module__ == 'pneumo_core.inference.predictor'\n"
            "assert sorted(pneumo_core.__all__) == sorted(pneumo_core._EXPORTS)\n"
            "assert all(getattr(pneumo_core, name) is not None for name in pneumo_core.__all__)\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    import pneumo_core

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        pneumo_core.nothing  # noqa: B018

"""The Analyse page's bounds, through Streamlit's AppTest on app.py: the study size cap (a study
over it is shown but not kept across pages) and the per-session prediction cache (the newest
CACHE_SIZE predictions kept; a rerun within the cache does not run the model again).

The bounds are lowered for the test (monkeypatch on ``ui.uploads`` and ``ui.study``, the modules the page reads
them from at run time), so a few real films stand in for 64 MB and 48 predictions."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.support import require
from ui.text import literal

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
ANALYSE = "app_pages/analyse.py"
TIMEOUT = 300



@pytest.fixture(autouse=True)
def app_ready():
    require((ROOT / "models" / "finetuned.keras").is_file(), "shipped model models/finetuned.keras needed")


@pytest.fixture(scope="module")
def films(data_root):
    return [sorted((data_root / "test" / cls).glob("*.jpeg"))[k] for cls, k in
            (("NORMAL", 0), ("PNEUMONIA", 0), ("NORMAL", 1))]


def analyse_page():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(ANALYSE)
    at.run()
    return at


def upload(at, paths):
    at.file_uploader(key="uploads").set_value([(p.name, p.read_bytes(), "image/jpeg") for p in paths])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def n_studies(at) -> int:
    return len([m for m in at.metric if m.label == "P(pneumonia)"])


def test_study_cap_is_64_mb_and_a_study_over_it_is_shown_but_not_kept(films, monkeypatch):
    from ui import uploads

    assert uploads.STUDY_MAX_BYTES == 64 * 2**20
    two = films[:2]
    monkeypatch.setattr(uploads, "STUDY_MAX_BYTES", sum(p.stat().st_size for p in two) - 1)
    at = upload(analyse_page(), two)
    assert n_studies(at) == 2, "a study over the cap is still scored and shown"
    assert any("come to more than" in c.value and "not kept" in c.value for c in at.caption)
    at.switch_page("app_pages/roc.py")
    at.run()
    at.switch_page(ANALYSE)
    at.run()
    assert not at.exception
    assert n_studies(at) == 0, "a study over the cap must not be kept when the page is left"
    assert any("Upload one or more" in i.value for i in at.info)

    # just under the cap: the same two films are kept across the visit
    monkeypatch.setattr(uploads, "STUDY_MAX_BYTES", sum(p.stat().st_size for p in two))
    at = upload(analyse_page(), two)
    assert not any("come to more than" in c.value for c in at.caption)
    at.switch_page("app_pages/roc.py")
    at.run()
    at.switch_page(ANALYSE)
    at.run()
    assert n_studies(at) == 2


@pytest.mark.parametrize("cache_size, calls_on_rerun", [(3, 0), (2, 3)])
def test_prediction_cache_keeps_the_newest_and_evicts_the_oldest(films, monkeypatch, cache_size, calls_on_rerun):
    """Three films: with room for three a slider move re-labels without running the model; with
    room for two the oldest is evicted (and, the study being larger than the cache, each rerun
    scores every film again: the bound wins over speed)."""
    from pneumo_core.inference.predictor import Predictor
    from ui import study

    calls = []
    real_predict = Predictor.predict

    def counting_predict(self, *args, **kwargs):
        calls.append(kwargs.get("name"))
        return real_predict(self, *args, **kwargs)

    monkeypatch.setattr(study, "CACHE_SIZE", cache_size)
    monkeypatch.setattr(Predictor, "predict", counting_predict)
    at = upload(analyse_page(), films)
    assert n_studies(at) == 3 and calls == [p.name for p in films]
    kept = list(at.session_state["_predictions"])
    assert len(kept) == cache_size
    assert [key[2] for key in kept] == [p.name for p in films][-cache_size:], "the oldest must go first"
    calls.clear()
    at.slider(key="alpha").set_value(0.6).run()  # any rerun of the page
    assert not at.exception and n_studies(at) == 3
    assert len(calls) == calls_on_rerun, calls
    assert len(at.session_state["_predictions"]) == cache_size


def test_a_photograph_gets_the_not_a_chest_xray_branch(test_normal):
    """A real non-chest image (scikit-image's astronaut photograph) beside a film: its own flag
    in the review table, the detector's message, the image shown unscored; the film is scored."""
    import io

    import skimage.data
    from PIL import Image

    from pneumo_core.inference.ood import OOD_REASON

    photo = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(photo, "PNG")
    at = analyse_page()
    at.file_uploader(key="uploads").set_value([("astronaut.png", photo.getvalue(), "image/png"),
                                               (test_normal.name, test_normal.read_bytes(), "image/jpeg")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and literal("astronaut.png") in errors[0] and literal(OOD_REASON[:40]) in errors[0]
    review = at.dataframe[0].value
    assert list(review["file"]) == ["astronaut.png", test_normal.name]
    assert list(review["flag"])[0] == "not a chest X-ray" and review["p_pneumonia"][0] == "-"
    assert review["label"][1] in ("NORMAL", "PNEUMONIA")
    assert n_studies(at) == 1
    images = at.get("image")
    # the photograph's decoded image (one), then the film's original, overlay and colour scale
    assert len(images) == 4


def test_an_upload_is_decoded_once_and_kept_at_the_display_size(films, monkeypatch):
    """The page hands each upload's bytes to the predictor, which decodes it once: a refused file is not
    decoded again to word its reason, and nothing is decoded again on a rerun. What the session keeps is
    the prediction as returned, film and heatmap at the dashboard's display size, never changed."""
    from pneumo_core.inference import predictor as pipeline
    from ui.viewer import DISPLAY_SIDE

    calls = []
    real = pipeline.load_image

    def counting(data, name=None):
        calls.append(name)
        return real(data, name)

    monkeypatch.setattr(pipeline, "load_image", counting)
    at = analyse_page()
    at.file_uploader(key="uploads").set_value([("x.png", b"this is plain text, not an image\n" * 4, "image/png"),
                                               (films[1].name, films[1].read_bytes(), "image/jpeg")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert sorted(calls) == sorted(["x.png", films[1].name]), calls
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and literal("x.png") in errors[0] and "plain text" in errors[0]
    assert n_studies(at) == 1
    at.slider(key="alpha").set_value(0.6).run()
    assert not at.exception and len(calls) == 2, "a rerun decoded a film again"
    kept = [scored.pred for scored in at.session_state["_predictions"].values()]
    refused, film = sorted(kept, key=lambda pred: pred.file != "x.png")
    assert refused.film is None and refused.heatmap is None and refused.error
    assert max(film.film.pixels.shape[:2]) <= DISPLAY_SIDE and film.heatmap.shape == film.film.pixels.shape[:2]
    assert film.heatmap.dtype == "float16"

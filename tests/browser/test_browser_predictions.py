"""In a real browser (``streamlit run`` + headless Chromium): the P(pneumonia) the Analyse page
shows for a test-split film equals the shipped model's saved test prediction for that file; a
photograph beside it gets the not-a-chest-X-ray branch (its flag, its message, the image shown);
the review CSV and the report PNG the page offers for download carry the provenance and content
they promise. Skipped without Chromium or Playwright, failed under PNEUMO_REQUIRE_DATA=1."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.browser import app_in_browser, require_browser, shots
from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
REPORTS = ROOT / "models" / "reports" / "finetuned"


@pytest.fixture(scope="module")
def browser_ready():
    require_browser()
    require((ROOT / "models" / "finetuned.keras").is_file(), "shipped model models/finetuned.keras needed")


@pytest.fixture(scope="module")
def film_and_saved_p(data_root):
    """A NORMAL test film whose saved p is well inside (0, 1), so a wrong score would show."""
    import pandas as pd

    require((REPORTS / "test_predictions.csv").is_file(), "models/reports/finetuned/test_predictions.csv needed")
    saved = pd.read_csv(REPORTS / "test_predictions.csv")
    saved = saved[saved.label == 0]
    inside = saved[(saved.p_pneumonia > 0.05) & (saved.p_pneumonia < 0.95)]
    row = (inside if len(inside) else saved).iloc[0]
    film = data_root / "test" / "NORMAL" / Path(row.file).name
    require(film.is_file(), f"{film} not found")
    return film, float(row.p_pneumonia)


def _photo(tmp_path) -> Path:
    import skimage.data
    from PIL import Image

    path = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def _download(page, button_text: str, timeout_ms: int = 120_000) -> bytes:
    button = page.locator('[data-testid="stDownloadButton"]', has_text=button_text).locator("button").first
    with page.expect_download(timeout=timeout_ms) as info:
        button.click()
    return Path(info.value.path()).read_bytes()


def test_shown_p_matches_saved_predictions_and_downloads_carry_provenance(browser_ready, film_and_saved_p,
                                                                          tmp_path):
    import pandas as pd
    from PIL import Image

    from pneumo_core.review.report_image import MARGIN, PANEL

    film, saved_p = film_and_saved_p
    training = json.loads((REPORTS / "training.json").read_text())
    from ui.cache import model_file  # the file the page runs: the LiteRT export by default

    sha = json.loads((ROOT / "models" / "MANIFEST.json").read_text())["models"][model_file("finetuned").name]["sha256"]
    photo = _photo(tmp_path)
    with app_in_browser(ARTIFACTS, accept_downloads=True) as (server, page, errors):
        page.set_default_timeout(240_000)  # the first model load on a busy machine
        page.goto(f"{server.url}/analyse")
        shots.wait_page_idle(page, 240_000)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
            [str(film), str(photo)])
        shots.label_locator(page).first.wait_for(timeout=240_000)
        page.get_by_text("The image as decoded (not scored)").first.wait_for(timeout=240_000)
        shots.wait_page_idle(page, 240_000)
        page.screenshot(path=str(ARTIFACTS / "browser_predictions.png"), full_page=True)

        # the score shown (3 decimals) is the saved evaluation's for this very file
        shown = page.locator('[data-testid="stMetric"]', has_text="P(pneumonia)") \
            .locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert len(shown) == 1, shown  # the photograph gets no score
        assert float(shown[0]) == pytest.approx(saved_p, abs=1e-3 + 5e-4)
        # the photograph: its own message and its image, no label
        message = page.locator('[data-testid="stAlert"]', has_text="astronaut.png").first.inner_text()
        assert "does not look like the frontal chest X-rays" in message
        assert page.get_by_text("The image as decoded (not scored)").first.is_visible()
        assert "Traceback" not in page.content()

        review = pd.read_csv(io.BytesIO(_download(page, "Review table (CSV)")))
        report = _download(page, "Report (PNG)")

    # review CSV: one row per file, with the provenance the page caption cannot carry
    assert list(review.file) == [film.name, photo.name]
    scored, refused = review.iloc[0], review.iloc[1]
    assert scored.p_pneumonia == pytest.approx(saved_p, abs=1e-4)
    assert scored.label == ("PNEUMONIA" if saved_p >= training["threshold"] else "NORMAL")
    assert refused.flag == "not a chest X-ray" and pd.isna(refused.p_pneumonia) and pd.isna(refused.label)
    for row in (scored, refused):
        assert row.model == "finetuned" and row.model_sha256 == sha
        assert row.threshold == pytest.approx(round(training["threshold"], 4))
        assert isinstance(row.operating_point, str) and row.operating_point
        assert "not a diagnostic device" in row.use

    # report PNG: a grey original, a coloured Grad-CAM overlay beside it, the disclaimer in its colour
    img = np.asarray(Image.open(io.BytesIO(report)).convert("RGB")).astype(int)
    assert img.shape[1] >= 900 and img.shape[0] > PANEL
    header = 56  # the title band above the panels
    panels = img[header:header + PANEL]
    saturation = panels.max(axis=2) - panels.min(axis=2)
    original = saturation[:, MARGIN:MARGIN + PANEL // 2]
    assert (original < 10).mean() > 0.95, "the original panel should be the grey film"
    coloured = (saturation > 40).mean(axis=0)  # per column: share of strongly coloured pixels
    assert coloured[PANEL:].max() > 0.3, "no Grad-CAM colour in the report"
    text = img[header + PANEL + 34:]
    vermilion = (text[..., 0] > 120) & (text[..., 1] < 100) & (text[..., 2] < 60)
    assert vermilion.sum() > 200, "the disclaimer line (drawn in its own colour) is missing"
    dark = (text.max(axis=2) < 80).sum()
    assert dark > 2000, "the label, score, model and file lines are missing"

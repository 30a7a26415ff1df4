"""End to end: ``streamlit run app.py`` in a subprocess, driven by headless Chromium (Playwright).

Uploads a real test-split X-ray through the Analyse page's file input, waits for the label and the
Grad-CAM image, then a bad file beside it; saves screenshots under ``test-artifacts/``. Fails if the
label does not appear, disagrees with the shipped fine-tuned model's saved test prediction, or the
server's stderr (or the page) shows a traceback.

Needs Chromium at /usr/bin/chromium (Debian package ``chromium``); skipped otherwise, failed under
PNEUMO_REQUIRE_DATA=1. With PNEUMO_SCREENSHOTS=1 it also refreshes docs/screenshots/ (one per page).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.browser import app_in_browser, require_browser, shots
from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"



@pytest.fixture(scope="module")
def browser_ready():
    require_browser()
    for v in ("finetuned", "frozen"):
        require((ROOT / "models" / f"{v}.keras").is_file(), f"shipped model models/{v}.keras needed")


def expected_label(image: Path) -> str:
    """The fine-tuned model's label for ``image`` from its saved test predictions."""
    import pandas as pd

    from pneumo_core.config import CLASS_NAMES

    csv = ROOT / "models" / "reports" / "finetuned" / "test_predictions.csv"
    require(csv.is_file(), "models/reports/finetuned/test_predictions.csv needed")
    df = pd.read_csv(csv)
    row = df[df["file"] == image.name]
    assert len(row) == 1, f"{image.name} not in {csv}"
    return CLASS_NAMES[int(row["predicted"].iloc[0])]


def test_upload_real_xray_in_browser(browser_ready, test_pneumonia):
    expected = expected_label(test_pneumonia)
    with app_in_browser(ARTIFACTS) as (server, page, errors):
        page.goto(f"{server.url}/analyse")
        shots.wait_page_idle(page)
        assert page.get_by_text("not a diagnostic device").first.is_visible()
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Home" in nav and "Compare models" in nav, f"navigation not from app.py: {nav!r}"
        # the browser tab is named by the page's own entry in ui/navigation.py
        assert page.title() == "Analyse X-rays | Pneumonia chest X-ray workbench", page.title()

        label = shots.upload_and_wait(page, test_pneumonia)
        page.screenshot(path=str(ARTIFACTS / "browser_analyse_upload.png"), full_page=True)
        assert label == expected
        prob = page.locator('[data-testid="stMetric"]', has_text="P(pneumonia)") \
            .locator('[data-testid="stMetricValue"]').first.inner_text()
        assert 0.0 <= float(prob) <= 1.0
        assert page.get_by_text("Grad-CAM overlay, opacity").first.is_visible()

        # a bad file next to it: its own message, the good study stays
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
            {"name": "x.png", "mimeType": "image/png", "buffer": b"plain text, not an image\n" * 8})
        page.get_by_text("x.png: could not use this file").first.wait_for(timeout=120_000)
        shots.wait_page_idle(page)
        page.screenshot(path=str(ARTIFACTS / "browser_analyse_bad_file.png"), full_page=True)
        values = shots.label_locator(page).all_inner_texts()
        assert expected in [v.strip() for v in values]
        assert "Traceback" not in page.content()
        assert not errors, errors
        if os.environ.get("PNEUMO_SCREENSHOTS") == "1":
            shots.capture_all(server, ROOT / "docs" / "screenshots", test_pneumonia)

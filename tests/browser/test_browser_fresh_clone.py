"""A fresh clone in a real browser: no dataset folder (``PNEUMO_DATA_DIR`` points nowhere), every
page of the navigation renders without an error and never says a dataset is missing, and the
Analyse page's example picker labels a bundled teaching film with the score examples.csv saved."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.helpers.browser import ROOT, app_in_browser, require_browser, shots

ARTIFACTS = ROOT / "test-artifacts"
EXAMPLES = ROOT / "assets" / "examples" / "examples.csv"


@pytest.fixture(scope="module")
def browser_ready():
    require_browser()


def test_every_page_and_an_example_without_a_dataset(browser_ready, tmp_path, monkeypatch):
    from pneumo_core.inference.predictor import Predictor
    from ui import navigation

    monkeypatch.setenv("PNEUMO_DATA_DIR", str(tmp_path / "no-dataset-here"))
    monkeypatch.setenv("PNEUMO_DB_URL", f"sqlite:///{tmp_path / 'quiz.sqlite3'}")
    saved = pd.read_csv(EXAMPLES).set_index("file")
    threshold = Predictor("finetuned", warm_up=False).threshold
    with app_in_browser(ARTIFACTS) as (server, page, errors):
        for name, entry in navigation.PAGES.items():
            page.goto(f"{server.url}/{entry.url_path}")
            shots.wait_page_idle(page)
            text = page.locator('[data-testid="stMain"]').inner_text()
            assert page.get_by_text("not a diagnostic device").first.is_visible(), name
            assert "Traceback" not in page.content() and "error" not in page.title().lower(), name
            assert not re.search(r"no dataset|dataset (folder )?(is )?missing|download the", text, re.I), \
                (name, text[:500])

        page.goto(f"{server.url}/analyse")
        shots.wait_page_idle(page)
        page.get_by_role("tab", name="Try an example film").click()
        page.get_by_role("button", name="Run this example").click()
        label = shots.label_locator(page).first
        label.wait_for(timeout=180_000)
        shots.wait_page_idle(page)
        page.screenshot(path=str(ARTIFACTS / "browser_fresh_clone_example.png"), full_page=True)
        truth_line = page.locator('[data-testid="stAlert"]', has_text="True label").first.inner_text()
        assert "examples.csv of the teaching set" in truth_line, truth_line
        shown_file = re.search(r"File: (\S+\.jpeg)", truth_line)  # the original name, after the label
        assert shown_file, truth_line
        (film,) = saved.index[saved["original_file"] == shown_file.group(1)]
        p_shown = float(page.locator('[data-testid="stMetric"]', has_text="P(pneumonia)")
                        .locator('[data-testid="stMetricValue"]').first.inner_text())
        assert p_shown == pytest.approx(saved.loc[film, "p_finetuned"], abs=1.5e-3)
        assert label.inner_text().strip() == ("PNEUMONIA" if saved.loc[film, "p_finetuned"] >= threshold
                                              else "NORMAL")
        assert saved.loc[film, "truth"] in truth_line
        assert not errors, errors

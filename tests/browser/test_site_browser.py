"""Reads and the "Your site" page in a real browser: ``streamlit run app.py`` on a free 127.0.0.1 port with a
temporary SQLite database and no dataset folder, driven by headless Chromium (Playwright).

Reader "dr a" records reads of two bundled films on the Analyse page and finds them again after a reload; reader
"dr b", in a second browser context, reads one of them and sees only their own read. A third reader's reads of the
whole teaching set are stored through the library, so the site has 20 films of each class. The site page's
proposed threshold and sensitivity equal those computed here from the stored rows; adopting it is recorded in the
database and shown on Analyse. Fails on any JavaScript error or server traceback; screenshots in test-artifacts/.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pneumo_core.site.validation import validate_site
from pneumo_core.storage.reads import FilmScore, SiteReads, film_truths
from tests.helpers.browser import require_browser, shots

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
EXAMPLES = ROOT / "assets" / "examples"
WAIT_MS = 180_000
CHART = '[data-testid="stVegaLiteChart"]'  # st.altair_chart's container
pytestmark = pytest.mark.slow


def show_example(page, base: str | None, title: str) -> None:
    """Score the example ``title`` on Analyse; ``base``: open the page first (a new session), None: stay in this one."""
    if base is not None:
        page.goto(f"{base}/analyse")
        shots.wait_page_idle(page)
        page.get_by_role("tab", name="Try an example film").click()
    picker = page.locator('[data-testid="stSelectbox"]', has_text="Example from the bundled teaching set")
    picker.locator("input").click()
    page.keyboard.type(title)
    page.get_by_role("option", name=title, exact=True).click()
    shots.wait_page_idle(page)
    page.get_by_role("button", name="Run this example").click()
    page.get_by_text("Your read", exact=False).first.wait_for(timeout=WAIT_MS)
    shots.wait_page_idle(page)


def as_reader(page, nickname: str) -> None:
    box = page.get_by_label("Your nickname, to record your reads (any name you like; no real name)")
    box.fill(nickname)
    box.press("Enter")
    page.locator('[data-testid="stRadio"]', has_text=f"Read by {nickname}").wait_for(timeout=WAIT_MS)
    shots.wait_page_idle(page)


def read(page, nickname: str, choice: str) -> None:
    page.locator('[data-testid="stRadio"]', has_text=f"Read by {nickname}").get_by_text(choice, exact=True).click()
    page.get_by_text(f"UTC as {choice}", exact=False).wait_for(timeout=WAIT_MS)
    shots.wait_page_idle(page)


def checked(page, nickname: str) -> list[str]:
    radio = page.locator('[data-testid="stRadio"]', has_text=f"Read by {nickname}")
    return radio.locator("label:has(input:checked)").all_inner_texts()


def test_reads_a_reload_a_second_reader_and_an_adoption_shown_on_analyse(tmp_path, monkeypatch):
    require_browser()
    from playwright.sync_api import sync_playwright

    from pneumo_core.inference.predictor import Predictor

    url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    monkeypatch.setenv("PNEUMO_DB_URL", url)
    monkeypatch.setenv("PNEUMO_DATA_DIR", str(tmp_path / "no-dataset"))
    table = pd.read_csv(EXAMPLES / "examples.csv")
    first, second = table.iloc[0], table.iloc[1]  # Example 1 (NORMAL) and Example 2 (PNEUMONIA)
    assert (first.truth, second.truth) == ("NORMAL", "PNEUMONIA")
    ARTIFACTS.mkdir(exist_ok=True)
    with shots.Server(ARTIFACTS) as server, sync_playwright() as pw:
        browser = shots.launch_browser(pw)
        try:
            errors: list[str] = []
            ada_context, bea_context = (browser.new_context(viewport={"width": 1366, "height": 900})
                                        for _ in range(2))
            ada, bea = ada_context.new_page(), bea_context.new_page()
            for page in (ada, bea):
                page.on("pageerror", lambda exc: errors.append(str(exc)))

            show_example(ada, server.url, "Example 1")
            as_reader(ada, "dr a")
            read(ada, "dr a", "PNEUMONIA")
            show_example(ada, None, "Example 2")  # the same session: the nickname is kept
            read(ada, "dr a", "PNEUMONIA")
            ada.reload()  # a new session: the nickname again, then the read from the database
            shots.wait_page_idle(ada)
            ada.get_by_role("tab", name="Try an example film").click()
            show_example(ada, None, "Example 1")
            as_reader(ada, "dr a")
            assert checked(ada, "dr a") == ["PNEUMONIA"]
            ada.screenshot(path=str(ARTIFACTS / "site_read_after_reload.png"), full_page=True)

            show_example(bea, server.url, "Example 1")
            as_reader(bea, "dr b")
            assert checked(bea, "dr b") == []  # dr a's read is not dr b's
            read(bea, "dr b", "NORMAL")

            db = SiteReads(url)
            reads = db.reads()
            assert sorted((r.reader, r.read) for r in reads) == [("dr a", "PNEUMONIA"), ("dr a", "PNEUMONIA"),
                                                                  ("dr b", "NORMAL")]
            model = Predictor("finetuned", warm_up=False)
            assert {r.model_sha256 for r in reads} == {model.sha256}
            preds = model.predict_files([EXAMPLES / f for f in table.file])
            for row, pred in zip(table.itertuples(), preds):  # a third reader reads the whole set right
                db.record("dr c", FilmScore(row.sha256, model.name, model.sha256, pred.p_pneumonia, model.threshold,
                                            pred.ood_distance), row.truth)
            films = film_truths(db.reads(model.sha256))
            db.dispose()
            expected = validate_site((films["truth"] == "PNEUMONIA").astype(int), films["p_pneumonia"],
                                     model.threshold, n_boot=0)
            proposed = expected["proposed_threshold"]
            assert proposed is not None

            ada.goto(f"{server.url}/site")
            shots.wait_page_idle(ada)
            main = ada.locator('[data-testid="stMain"]')
            ada.get_by_text(f"Proposed: {proposed:.3f}", exact=False).wait_for(timeout=WAIT_MS)
            text = main.inner_text()
            assert "43 reads of 40 films by 3 readers" in text
            assert f"Sensitivity {expected['at_active']['sensitivity']:.3f}" in text
            assert f"Sensitivity {expected['at_proposed']['sensitivity']:.3f}" in text
            # ROC with readers, the recalibration from reads (20 films a class reached), drift
            charts = ada.locator(CHART)
            charts.nth(2).locator("svg .mark-symbol path").first.wait_for(timeout=WAIT_MS)  # drawn, not just placed
            assert charts.count() == 3
            for i in range(3):  # each chart has drawn marks (a Vega error leaves an empty view)
                assert charts.nth(i).locator("svg .mark-symbol path, svg .mark-line path").count() > 0, i
            # dr a against the others: Example 1 NORMAL by dr b and dr c (dr a wrong), Example 2 PNEUMONIA by dr c
            point = "dr a: sensitivity 1.000, specificity 0.000 (2 films)"
            assert charts.first.locator("svg .role-legend-label text", has_text=point).count() == 1
            ada.get_by_text("Make ", exact=False).first.click()  # the confirmation box
            ada.get_by_role("button", name="Adopt the proposed threshold").click()
            ada.get_by_text(f"Adopted {proposed:.3f}", exact=False).wait_for(timeout=WAIT_MS)
            shots.wait_page_idle(ada)
            ada.screenshot(path=str(ARTIFACTS / "site_page_adopted.png"), full_page=True)
            (adoption,) = SiteReads(url).adoptions()
            # a new session with no nickname typed: the local install's user
            assert (adoption.adopted_by, adoption.n_reads, adoption.active) == ("local", 40, True)

            show_example(bea, server.url, "Example 2")  # another session sees the site threshold
            sidebar = bea.locator('[data-testid="stSidebar"]').inner_text()
            assert f"Site threshold {proposed:.3f} adopted by local on" in sidebar
            assert f"Threshold {proposed:.3f}, operating point: site threshold (adopted)" in bea.locator(
                '[data-testid="stMain"]').inner_text()
            bea.screenshot(path=str(ARTIFACTS / "site_threshold_on_analyse.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()

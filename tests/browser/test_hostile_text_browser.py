"""Text stays text in a real browser: a real film uploaded under a file name holding a Markdown link, bare web and
mail addresses (which Streamlit links *after* Markdown is parsed, so escaping alone does not stop them), HTML and
LaTeX shows on the Analyse page as typed: no link, no tag, no formula anywhere on the page."""
from __future__ import annotations

from pathlib import Path

from tests.helpers.browser import app_in_browser, require_browser, shots

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
HOSTILE = "[Ada](https://evil.example) www.evil.example ada@evil.example <b>bold</b> $x^2$ =1+2.jpeg"
WORD_JOINER = "\u2060"


def test_a_hostile_file_name_shows_as_typed(test_normal, monkeypatch):
    require_browser()
    monkeypatch.setenv("PNEUMO_HIDE_FILE_NAMES", "0")  # names shown: the case where they could do harm
    with app_in_browser(ARTIFACTS) as (server, page, errors):
        page.goto(f"{server.url}/analyse")
        shots.wait_page_idle(page)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
            {"name": HOSTILE, "mimeType": "image/jpeg", "buffer": test_normal.read_bytes()})
        shots.label_locator(page).first.wait_for(timeout=180_000)
        shots.wait_page_idle(page)
        page.screenshot(path=str(ARTIFACTS / "browser_hostile_file_name.png"), full_page=True)

        main = page.locator('[data-testid="stMain"]')
        shown = main.inner_text().replace(WORD_JOINER, "")
        assert HOSTILE in shown, "the file name is not shown as typed"
        hrefs = main.locator("a").evaluate_all("links => links.map(a => a.href)")
        assert not [h for h in hrefs if "evil.example" in h], hrefs
        assert main.locator("b", has_text="bold").count() == 0  # no HTML tag from the name
        assert main.locator(".katex").count() == 0  # no formula from the name
        assert not errors, errors

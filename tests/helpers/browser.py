"""What the real-browser tests share: the server and browser helpers of ``scripts/screenshots.py``
(Debian's Chromium, ``streamlit run`` on a free loopback port) and the check that a browser can
run here (a skip with its reason on a user's machine, a failure under CI)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from scripts import screenshots as shots
from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]


def require_browser() -> None:
    """Chromium and Playwright's Python package are here, or the test skips (fails under CI)."""
    require(Path(shots.CHROMIUM).is_file(), f"Chromium not found at {shots.CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "playwright (Python package) not installed")


@contextmanager
def app_in_browser(artifacts: Path, python: str | None = None, **page_options):
    """``streamlit run app.py`` (by ``python``: another venv's interpreter, default this one) on a free
    loopback port and one Chromium page (1366x900; ``page_options`` go to ``new_page``). Yields ``(server, page,
    errors)``, ``errors`` collecting the page's JavaScript errors. On leaving: the browser is closed, the server
    stopped, and its stderr must hold no traceback."""
    from playwright.sync_api import sync_playwright

    artifacts.mkdir(parents=True, exist_ok=True)
    with shots.Server(artifacts, python=python) as server:
        with sync_playwright() as pw:
            browser = shots.launch_browser(pw)
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 900}, **page_options)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                yield server, page, errors
            finally:
                browser.close()
        stderr = server.stderr()
    assert "Traceback" not in stderr, stderr[-3000:]

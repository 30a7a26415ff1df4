"""What the real-browser tests share: the server and browser helpers of ``scripts/screenshots.py``
(Debian's Chromium, ``streamlit run`` on a free loopback port) and the check that a browser can
run here (a skip with its reason on a user's machine, a failure under CI)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.support import require

ROOT = Path(__file__).resolve().parents[1]

_spec = importlib.util.spec_from_file_location("pneumo_screenshots", ROOT / "scripts" / "screenshots.py")
shots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shots)


def require_browser() -> None:
    """Chromium and Playwright's Python package are here, or the test skips (fails under CI)."""
    require(Path(shots.CHROMIUM).is_file(), f"Chromium not found at {shots.CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "playwright (Python package) not installed")

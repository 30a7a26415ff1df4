"""Start the dashboard, drive it with headless Chromium (Playwright) and save one screenshot per page.

    python -m scripts.screenshots [--out docs/screenshots] [--image PATH] [--width 1366 --height 900]

The Analyse screenshot uploads ``--image`` (default: the first PNEUMONIA image of the dataset's test
split, a public, de-identified Kermany film). Needs Chromium at ``/usr/bin/chromium`` (Debian package
``chromium``; ``playwright install`` is not needed). The helpers are shared with tests/browser/test_browser.py.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("PNEUMO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PAGES = [("home", ""), ("analyse", "analyse"), ("compare", "compare"), ("roc", "roc"), ("protocols", "protocols"),
         ("about", "about")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run app.py`` on a free port; stderr captured to a file for inspection."""

    def __init__(self, log_dir: Path, port: int | None = None, python: str | None = None):
        self.python = python or sys.executable  # another venv's interpreter (the lean runtime test)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / "streamlit_stderr.log"
        self.stdout_path = log_dir / "streamlit_stdout.log"
        self.proc = None

    def __enter__(self) -> "Server":
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [self.python, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(self.port), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false"]
        self._err = open(self.stderr_path, "w")
        self._out = open(self.stdout_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._out, stderr=self._err)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}: {self.stderr()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"streamlit not healthy after {timeout:.0f}s")

    def stderr(self) -> str:
        self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        self._out.flush()
        return self.stdout_path.read_text(errors="replace")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._err.close()
        self._out.close()


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


IDLE_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  return main && main.querySelector('h1')
    && !document.querySelector('[data-testid="stStatusWidget"]')
    && !main.querySelector('[data-testid="stSkeleton"]')
    && !main.querySelector('[data-stale="true"]');
}"""


def wait_page_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit finished running the script and drew every element (checked twice)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    for _ in range(2):
        page.wait_for_timeout(700)
        page.wait_for_function(IDLE_JS, timeout=timeout_ms)
    page.wait_for_timeout(800)  # let Vega-Lite charts and data grids finish drawing


def label_locator(page):
    """The model's label of every study on the Analyse page (a heading under ``LABEL_HEADING``)."""
    from ui.study import LABEL_HEADING

    return page.locator('[data-testid="stMarkdownContainer"]', has_text=LABEL_HEADING).locator("h4")


def upload_and_wait(page, image: Path, timeout_ms: int = 180_000) -> str:
    """On the Analyse page: upload ``image`` through the real file input, wait for the label and
    both images (original + heatmap). Returns the label text shown."""
    file_input = page.locator('[data-testid="stFileUploader"] input[type="file"]').first
    file_input.wait_for(state="attached", timeout=timeout_ms)  # the first visit may still be loading the model
    file_input.set_input_files(str(image))
    label = label_locator(page).first
    label.wait_for(timeout=timeout_ms)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('[data-testid=\"stImage\"] img'))"
        ".filter(i => i.complete && i.naturalWidth > 0).length >= 2", timeout=timeout_ms)
    wait_page_idle(page, timeout_ms)
    return label.inner_text().strip()


def capture_all(server: Server, out_dir: Path, image: Path | None, width: int = 1366, height: int = 900) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": width, "height": height})
        for name, path in PAGES:
            page.goto(f"{server.url}/{path}")
            wait_page_idle(page)
            if name == "analyse" and image is not None:
                upload_and_wait(page, image)
            if name in ("roc", "compare", "protocols"):  # past the disclaimer and title, to the charts
                page.locator('[data-testid="stVegaLiteChart"]').first.scroll_into_view_if_needed()
                page.wait_for_timeout(500)
            target = out_dir / f"{name}.png"
            page.screenshot(path=str(target), full_page=False)
            saved.append(target)
        browser.close()
    return saved


def main(argv=None) -> int:
    from pneumo_core.config import data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--image", help="X-ray to upload on the Analyse page")
    ap.add_argument("--width", type=int, default=1366)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    image = Path(args.image) if args.image else next(iter(sorted((data_dir() / "test" / "PNEUMONIA").glob("*.jpeg"))),
                                                     None)
    with Server(ROOT / "test-artifacts") as server:
        for p in capture_all(server, Path(args.out), image, args.width, args.height):
            print(p)
        if "Traceback" in server.stderr():
            print("server stderr has a Traceback:\n" + server.stderr()[-3000:], file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

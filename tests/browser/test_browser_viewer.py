"""The film viewer (ui/viewer.py) in a real browser: ``streamlit run tests/helpers/harness/viewer_page.py``
on a 12-bit DX DICOM made from a test-split film, with its Grad-CAM heatmap from the shipped
fine-tuned model, driven by headless Debian Chromium (Playwright).

Checks what the user sees change: a window preset, the overlay toggle and the opacity each change
the picture Plotly draws (its image data), zooming through Plotly's modebar and the scroll wheel
changes the axis range, and "Reset view" brings back the whole film and the first picture.
Screenshots go to ``test-artifacts/``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.browser import require_browser
from tests.helpers.dicom_files import dx_film, grey

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
HARNESS = "tests/helpers/harness/viewer_page.py"
CHROMIUM = os.environ.get("PNEUMO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
IMAGE_JS = """() => { const im = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot image');
  return im ? (im.getAttribute('href') || im.getAttribute('xlink:href')) : null; }"""
RANGE_JS = """() => { const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  return plot && plot._fullLayout ? [plot._fullLayout.xaxis.range, plot._fullLayout.yaxis.range] : null; }"""
IDLE_JS = """() => { const main = document.querySelector('[data-testid="stMain"]');
  return main && main.querySelector('h1') && !document.querySelector('[data-testid="stStatusWidget"]')
    && !main.querySelector('[data-stale="true"]') && main.querySelector('.js-plotly-plot image'); }"""


@pytest.fixture(scope="module")
def browser_ready():
    require_browser()


@pytest.fixture(scope="module")
def film_and_heatmap(data_root, shipped_predictor, tmp_path_factory):
    """A 12-bit DX DICOM of a test-split pneumonia film and its Grad-CAM heatmap (.npy)."""
    from pneumo_core.imaging.decode import load_image

    film = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[5]
    folder = tmp_path_factory.mktemp("viewer")
    dicom = folder / "film.dcm"
    dicom.write_bytes(dx_film(grey(film)))
    loaded = load_image(dicom.read_bytes(), "film.dcm")
    assert loaded.bit_depth == 12 and loaded.raw is not None
    pred = shipped_predictor.predict(loaded, explain=True)
    assert pred.heatmap is not None and pred.heatmap.max() > pred.heatmap.min()
    heatmap = folder / "heatmap.npy"
    np.save(heatmap, pred.heatmap)
    return dicom, heatmap


@contextmanager
def viewer_server(dicom: Path, heatmap: Path):
    """``streamlit run`` of the viewer harness on a free loopback port; yields (url, stderr reader)."""
    from tests.helpers.orthanc import free_port

    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PNEUMO_VIEWER_DICOM": str(dicom),
           "PNEUMO_VIEWER_HEATMAP": str(heatmap)}
    err_path = ARTIFACTS / "viewer_streamlit_stderr.log"
    with err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", HARNESS, "--server.headless", "true",
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, f"streamlit exited: {err_path.read_text()[-2000:]}"
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "streamlit not healthy after 90 s"
                time.sleep(0.5)
            yield url, lambda: err_path.read_text(errors="replace")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def settle(page) -> None:
    """Wait until Streamlit finished the run and Plotly drew the film (checked twice)."""
    for _ in range(2):
        page.wait_for_timeout(600)
        page.wait_for_function(IDLE_JS, timeout=120_000)
    page.wait_for_timeout(600)


def picture(page) -> str:
    """A digest of the image data Plotly draws."""
    source = page.evaluate(IMAGE_JS)
    assert source and source.startswith("data:image/jpeg;base64,"), source and source[:40]
    return hashlib.sha256(source.encode()).hexdigest()


def x_span(page) -> float:
    (x_lo, x_hi), _ = page.evaluate(RANGE_JS)
    return abs(x_hi - x_lo)


def changed(page, before: str, action, what: str) -> str:
    action()
    settle(page)
    after = picture(page)
    assert after != before, f"{what} did not change the picture"
    return after


def test_viewer_window_overlay_opacity_zoom_and_reset(browser_ready, film_and_heatmap):
    from playwright.sync_api import sync_playwright

    with viewer_server(*film_and_heatmap) as (url, stderr), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            settle(page)
            assert page.get_by_text("not a lesion outline").first.is_visible()
            full = x_span(page)
            first = shown = picture(page)

            # window/level: the presets of a 12-bit film, each a different picture
            def pick(name):
                page.locator('[data-testid="stSelectbox"]').first.click()
                page.get_by_role("option").filter(has_text=name).first.click()

            bone_window = changed(page, shown, lambda: pick("bone"), "the bone window")
            assert page.get_by_text("Window: bone").first.is_visible()
            shown = changed(page, bone_window, lambda: pick("lung"), "the lung window")
            page.screenshot(path=str(ARTIFACTS / "browser_viewer_lung_window.png"), full_page=True)

            # opacity, then the overlay off
            def opacity_to_max():
                page.get_by_role("slider").first.focus()
                page.keyboard.press("End")

            shown = changed(page, shown, opacity_to_max, "the overlay opacity")
            shown = changed(page, shown, lambda: page.get_by_text("Grad-CAM overlay", exact=True).first.click(),
                            "the overlay toggle")
            assert page.get_by_text("not a lesion outline").count() == 0  # no overlay, no heatmap caption

            shown = changed(page, shown, lambda: pick("full range"), "the full-range window")

            # zoom: Plotly's modebar, then the scroll wheel (in the browser: no rerun, the picture stays)
            page.locator('[data-testid="stPlotlyChart"]').first.hover()
            page.locator('.modebar-btn[data-title="Zoom in"]').first.click()
            page.wait_for_timeout(800)
            zoomed = x_span(page)
            assert zoomed < 0.75 * full, (zoomed, full)
            box = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(800)
            assert x_span(page) < zoomed and picture(page) == shown
            page.screenshot(path=str(ARTIFACTS / "browser_viewer_zoomed.png"), full_page=True)

            # reset: the whole film, and the first picture again (as loaded, overlay on at 0.4)
            changed(page, shown, lambda: page.get_by_role("button", name="Reset view").click(), "Reset view")
            assert picture(page) == first and x_span(page) == pytest.approx(full, rel=1e-6)
            assert page.get_by_text("not a lesion outline").first.is_visible()
            assert "Traceback" not in page.content()
            assert not errors, errors
        finally:
            browser.close()
        assert "Traceback" not in stderr(), stderr()[-3000:]


def test_compose_film_windows_raw_values_and_blends_the_heatmap(test_pneumonia):
    """What the viewer sends, without a browser: windows of the kept 12-bit values (MONOCHROME1
    inverted back, bone white), the heatmap blended only when on and visible."""
    from pneumo_core.imaging.decode import load_image
    from ui.viewer import AS_LOADED, DISPLAY_SIDE, FilmView, compose_film, window_choices

    source = grey(test_pneumonia)
    plain = load_image(dx_film(source), "film.dcm")
    inverted = load_image(dx_film(source, "MONOCHROME1"), "film.dcm")
    choices = window_choices(plain)
    assert choices[0] == AS_LOADED and {"lung", "bone", "full range (min-max)"} <= {c.name for c in choices[1:]}
    full = next(c for c in choices[1:] if c.name.startswith("full range"))
    as_loaded = compose_film(plain)
    assert as_loaded.shape == (*source.shape, 3) and np.array_equal(as_loaded[..., 0], plain.pixels)
    for film in (plain, inverted):  # the full-range window is the film stretched, bone white either way
        shown = compose_film(film, view=FilmView(window=next(c for c in window_choices(film)[1:]
                                                             if c.name.startswith("full range"))))
        assert np.corrcoef(shown[..., 0].ravel(), source.ravel())[0, 1] > 0.999
    bone = compose_film(plain, view=FilmView(window=next(c for c in choices[1:] if c.name == "bone")))
    assert bone[..., 0].mean() < compose_film(plain, view=FilmView(window=full))[..., 0].mean()  # bone darkens the rest
    heatmap = np.zeros((7, 7), np.float32)
    heatmap[3, 3] = 1.0
    assert np.array_equal(compose_film(plain, heatmap, FilmView(overlay=False)), as_loaded)
    assert np.array_equal(compose_film(plain, heatmap, FilmView(opacity=0.0)), as_loaded)
    blended = compose_film(plain, heatmap, FilmView(opacity=0.6))
    assert blended.shape == as_loaded.shape and np.abs(blended.astype(int) - as_loaded.astype(int)).mean() > 5
    assert max(compose_film(np.zeros((3000, 2000), np.uint8)).shape) == DISPLAY_SIDE  # shrunk for the browser
    # a prediction's display copy and heatmap already match: composed as they are, at the display size
    from pneumo_core.inference.prediction import display_copy, heatmap_at

    big = load_image(dx_film(np.kron(source, np.ones((6, 6), source.dtype))), "film.dcm")
    shown = display_copy(big, DISPLAY_SIDE)
    assert max(shown.pixels.shape) == DISPLAY_SIDE and shown.raw.shape == shown.pixels.shape
    heat = heatmap_at(heatmap, shown.pixels.shape)
    composed = compose_film(shown, heat, FilmView(window=full, opacity=0.6))
    assert composed.shape == (*heat.shape, 3) and np.abs(composed.astype(int) - compose_film(
        shown, view=FilmView(window=full)).astype(int)).mean() > 5

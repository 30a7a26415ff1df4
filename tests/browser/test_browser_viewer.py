"""The film viewer (ui/viewer.py) in a real browser: ``streamlit run tests/helpers/harness/viewer_page.py``
on a 12-bit DX DICOM made from a test-split film, with its Grad-CAM heatmap from the shipped
fine-tuned model, driven by headless Debian Chromium (Playwright).

Checks what the user sees change: a window preset, the overlay toggle and the opacity each change
the picture Vega-Lite draws (its image data); the film is drawn whole with its aspect ratio; the scroll
wheel zooms and a drag pans (where the film's ``<image>`` lies on screen changes, the picture does not);
a rerun by an unrelated widget keeps the zoom; a double-click, then "Reset view", bring back the whole
film, the latter also the first picture. Screenshots go to ``test-artifacts/``.
"""
from __future__ import annotations

import base64
import hashlib
import io
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
CHART = '[data-testid="stVegaLiteChart"]'
IMAGE_JS = f"""() => {{ const im = document.querySelector('{CHART} svg image');
  return im ? (im.getAttribute('href') || im.getAttribute('xlink:href')) : null; }}"""
# where the film's <image> lies and the plot area it is clipped to, on screen: [x, y, width, height] each
PLACE_JS = f"""() => {{ const im = document.querySelector('{CHART} svg image');
  const clip = document.querySelector('{CHART} svg .role-frame.root > g > path.background');
  const box = e => {{ const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }};
  return im && clip ? [box(im), box(clip)] : null; }}"""
IDLE_JS = f"""() => {{ const main = document.querySelector('[data-testid="stMain"]');
  return main && main.querySelector('h1') && !document.querySelector('[data-testid="stStatusWidget"]')
    && !main.querySelector('[data-stale="true"]') && main.querySelector('{CHART} svg image'); }}"""


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
    """Wait until Streamlit finished the run and Vega-Lite drew the film (checked twice)."""
    for _ in range(2):
        page.wait_for_timeout(600)
        page.wait_for_function(IDLE_JS, timeout=120_000)
    page.wait_for_timeout(600)


def picture(page) -> str:
    """A digest of the image data Vega-Lite draws."""
    source = page.evaluate(IMAGE_JS)
    assert source and source.startswith("data:image/jpeg;base64,"), source and source[:40]
    return hashlib.sha256(source.encode()).hexdigest()


def picture_size(page) -> tuple[int, int]:
    """(width, height) in pixels of the JPEG the chart draws."""
    from PIL import Image

    source = page.evaluate(IMAGE_JS)
    with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as img:
        return img.size


def placed(page) -> list[float]:
    """Where the film's image lies on screen: [x, y, width, height]."""
    return page.evaluate(PLACE_JS)[0]


def plot_area(page) -> list[float]:
    """The plot area the film is clipped to, on screen: [x, y, width, height]."""
    return page.evaluate(PLACE_JS)[1]


def middle(page) -> tuple[float, float]:
    x, y, w, h = plot_area(page)
    return x + w / 2, y + h / 2


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
            errors = []  # JavaScript errors, and Vega's (logged to the console)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: msg.type == "error" and not msg.text.startswith("Failed to load resource")
                    and errors.append(msg.text))
            page.goto(url)
            settle(page)
            assert page.get_by_text("not a lesion outline").first.is_visible()
            first = shown = picture(page)
            full = placed(page)
            # the whole film, centred, undistorted: it fills the plot area's width or its height
            (x, y, w, h), (ax, ay, aw, ah) = full, plot_area(page)
            film_w, film_h = picture_size(page)
            assert w / h == pytest.approx(film_w / film_h, rel=0.01)
            assert x >= ax - 0.5 and y >= ay - 0.5 and x + w <= ax + aw + 0.5 and y + h <= ay + ah + 0.5
            assert min(aw - w, ah - h) < 1 and abs((x - ax) - (ax + aw - x - w)) < 1

            # zoom and pan happen in the browser: no rerun, the same picture, another part of it shown
            centre = middle(page)
            page.mouse.move(*centre)
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(800)
            zoomed = placed(page)
            assert zoomed[2] > 1.3 * w and zoomed[3] > 1.3 * h and picture(page) == shown, (zoomed, full)
            page.mouse.move(*centre)
            page.mouse.down()
            page.mouse.move(centre[0] + 80, centre[1] + 40, steps=8)
            page.mouse.up()
            page.wait_for_timeout(800)
            panned = placed(page)
            assert [panned[0] - zoomed[0], panned[1] - zoomed[1]] == pytest.approx([80, 40], abs=2)
            assert panned[2:] == pytest.approx(zoomed[2:]) and picture(page) == shown
            page.screenshot(path=str(ARTIFACTS / "browser_viewer_zoomed.png"), full_page=True)

            # a rerun that leaves the picture as it was keeps the zoom and pan
            page.get_by_text("A widget unrelated to the viewer").click()
            settle(page)
            assert picture(page) == shown and placed(page) == pytest.approx(panned, abs=0.5)

            # double-click: the whole film again
            centre = middle(page)
            page.mouse.dblclick(*centre)
            page.wait_for_timeout(800)
            assert placed(page) == pytest.approx(full, abs=0.5)

            # "Reset view" with the picture unchanged (defaults already): the chart's new revision drops the zoom
            page.mouse.move(*centre)
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(800)
            assert placed(page)[2] > 1.3 * w
            page.get_by_role("button", name="Reset view").click()
            settle(page)
            assert picture(page) == first and placed(page) == pytest.approx(full, abs=0.5)

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

            # reset, zoomed in again: the whole film, and the first picture (as loaded, overlay on at 0.4)
            centre = middle(page)
            page.mouse.move(*centre)
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(800)
            assert placed(page)[2] > 1.3 * w
            changed(page, shown, lambda: page.get_by_role("button", name="Reset view").click(), "Reset view")
            assert picture(page) == first and placed(page) == pytest.approx(full, abs=0.5)
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

"""A one-page PNG summary of one study: the film, its Grad-CAM overlay, the score and how it was made.

Pillow and numpy only (no Streamlit); built in memory and returned as PNG bytes, never written to disk.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np

from pneumo_core.config import DISCLAIMER_PLAIN
from pneumo_core.imaging.core import grey_to_rgb
from pneumo_core.inference.gradcam import colour_scale, overlay

PANEL = 480  # height of each image panel, px
MARGIN = 24
BOLD = 2  # text drawn at this thickness or more is bold


def _fit(img: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    from pneumo_core.imaging.resample import shrink

    h, w = img.shape[:2]
    width = max(1, int(round(w * height / h)))
    if h > height:
        return shrink(img, (height, width))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BICUBIC))


def draw_text(draw, xy: tuple[int, int], text: str, scale: float, colour, thick: int = 1, anchor: str = "ls") -> None:
    """``text`` on a Pillow ``ImageDraw`` at ``xy`` (by default the left end of its baseline), in Pillow's own
    font at the size OpenCV's Hershey font had at ``scale`` (the layout was made with it); bold when ``thick``
    reaches ``BOLD``."""
    from PIL import ImageFont

    bold = 1 if thick >= BOLD else 0
    draw.text(xy, text, fill=tuple(colour), font=ImageFont.load_default(size=max(8, round(29 * scale))),
              anchor=anchor, stroke_width=bold, stroke_fill=tuple(colour))


def _ascii(text: str) -> str:
    return str(text).encode("ascii", "replace").decode("ascii")


def study_report_png(image_rgb: np.ndarray, heatmap: np.ndarray | None, *, file_name: str, p_pneumonia: float,
                     label: str, threshold: float, model_name: str, model_sha256: str | None = None,
                     operating_point: str | None = None, alpha: float = 0.4, confidence: str | None = None,
                     notes=(), when: _dt.datetime | None = None) -> bytes:
    """Side-by-side original and overlay with a text block; returns PNG bytes."""
    import io

    from PIL import Image, ImageDraw

    when = when or _dt.datetime.now().astimezone()
    img = grey_to_rgb(image_rgb).astype(np.uint8)
    left = _fit(img, PANEL)
    panels = [left]
    if heatmap is not None:
        panels.append(_fit(overlay(img, heatmap, alpha=alpha), PANEL))
    bar = colour_scale(PANEL, vertical=True)
    bar_width = bar.shape[1] + 70 if heatmap is not None else 0
    widths = sum(p.shape[1] for p in panels) + MARGIN * (len(panels) + 1) + bar_width
    width = max(widths, 900)
    lines = [
        (f"{label}   P(pneumonia) = {p_pneumonia:.3f}   threshold = {threshold:.3f}", 0.8, 2),
        (f"Confidence cue: {confidence}" if confidence else "", 0.55, 1),
        (f"File: {file_name}", 0.55, 1),
        (f"Model: {model_name}" + (f"   SHA-256 {model_sha256[:16]}..." if model_sha256 else ""), 0.55, 1),
        (f"Operating point: {operating_point or 'custom'}   Generated: {when:%Y-%m-%d %H:%M %Z}", 0.55, 1),
        ("Heatmap (Grad-CAM): regions that raised the pneumonia score, not an outline of disease.", 0.55, 1),
    ]
    lines += [(f"Image note: {n}", 0.5, 1) for n in notes]
    lines.append((DISCLAIMER_PLAIN, 0.55, 2))
    lines = [ln for ln in lines if ln[0]]
    header = 56
    text_h = 30 * len(lines) + MARGIN
    canvas = np.full((header + PANEL + 34 + text_h, width, 3), 255, np.uint8)
    x = MARGIN
    texts = [("Pneumonia X-ray workbench - study report", (MARGIN, 38), 0.9, (20, 20, 20), 2)]
    captions = ["Original", f"Grad-CAM overlay (opacity {alpha:.2f})"]
    for panel, cap in zip(panels, captions):
        canvas[header:header + PANEL, x:x + panel.shape[1]] = panel
        texts.append((cap, (x, header + PANEL + 24), 0.55, (60, 60, 60), 1))
        x += panel.shape[1] + MARGIN
    if heatmap is not None:
        canvas[header:header + PANEL, x:x + bar.shape[1]] = bar
        texts.append(("high", (x + bar.shape[1] + 6, header + 14), 0.5, (60, 60, 60), 1))
        texts.append(("low", (x + bar.shape[1] + 6, header + PANEL - 4), 0.5, (60, 60, 60), 1))
    y = header + PANEL + 34 + 26
    for text, scale, thick in lines:
        colour = (180, 40, 0) if text == DISCLAIMER_PLAIN else (20, 20, 20)
        texts.append((_ascii(text), (MARGIN, y), scale, colour, thick))
        y += 30
    page = Image.fromarray(canvas)
    draw = ImageDraw.Draw(page)
    for text, xy, scale, colour, thick in texts:
        draw_text(draw, xy, text, scale, colour, thick)
    buf = io.BytesIO()
    page.save(buf, "PNG")
    return buf.getvalue()

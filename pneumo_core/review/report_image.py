"""A one-page PNG summary of one study: the film, its Grad-CAM overlay, the score and how it was made.

OpenCV only (no Streamlit); built in memory and returned as PNG bytes, never written to disk.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np

from pneumo_core.config import DISCLAIMER_PLAIN
from pneumo_core.imaging.core import grey_to_rgb
from pneumo_core.inference.gradcam import colour_scale, overlay

PANEL = 480  # height of each image panel, px
MARGIN = 24
FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def _fit(img: np.ndarray, height: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    width = max(1, int(round(w * height / h)))
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_CUBIC)


def _ascii(text: str) -> str:
    return str(text).encode("ascii", "replace").decode("ascii")


def study_report_png(image_rgb: np.ndarray, heatmap: np.ndarray | None, *, file_name: str, p_pneumonia: float,
                     label: str, threshold: float, model_name: str, model_sha256: str | None = None,
                     operating_point: str | None = None, alpha: float = 0.4, confidence: str | None = None,
                     notes=(), when: _dt.datetime | None = None) -> bytes:
    """Side-by-side original and overlay with a text block; returns PNG bytes."""
    import cv2

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
    cv2.putText(canvas, "Pneumonia X-ray workbench - study report", (MARGIN, 38), FONT, 0.9, (20, 20, 20), 2,
                cv2.LINE_AA)
    x = MARGIN
    captions = ["Original", f"Grad-CAM overlay (opacity {alpha:.2f})"]
    for panel, cap in zip(panels, captions):
        canvas[header:header + PANEL, x:x + panel.shape[1]] = panel
        cv2.putText(canvas, cap, (x, header + PANEL + 24), FONT, 0.55, (60, 60, 60), 1, cv2.LINE_AA)
        x += panel.shape[1] + MARGIN
    if heatmap is not None:
        canvas[header:header + PANEL, x:x + bar.shape[1]] = bar
        cv2.putText(canvas, "high", (x + bar.shape[1] + 6, header + 14), FONT, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(canvas, "low", (x + bar.shape[1] + 6, header + PANEL - 4), FONT, 0.5, (60, 60, 60), 1,
                    cv2.LINE_AA)
    y = header + PANEL + 34 + 26
    for text, scale, thick in lines:
        colour = (180, 40, 0) if text == DISCLAIMER_PLAIN else (20, 20, 20)
        cv2.putText(canvas, _ascii(text), (MARGIN, y), FONT, scale, colour, thick, cv2.LINE_AA)
        y += 30
    ok, buf = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()

"""A film viewer in the browser: zoom (scroll wheel) and pan (drag) on the film, double-click to show it
whole again, optionally with its Grad-CAM overlay, drawn by Vega-Lite (Altair) from an encoded JPEG.

The image travels as one data URI (the ``url`` of an ``image`` mark): a table of pixel values would be
megabytes for a 768 px film (:data:`DISPLAY_SIDE`). Window/level, overlay and opacity are applied on the
server (:func:`compose_film`) and the new picture replaces the old one in the chart's data. Zoom and pan
live in the browser (a Vega-Lite interval selection bound to the scales): a rerun that leaves spec and
picture as they were keeps them, but a new picture (another window, opacity or overlay) shows the whole
film again: Streamlit resets scale-bound selections when a chart's data change. "Reset view" changes the
spec (a new revision), which redraws the chart with the whole film, and brings back the defaults. There is
no box zoom (Vega-Lite's interval selection either zooms the scales or draws a box, not both).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import altair as alt
import numpy as np
import streamlit as st

from ui.chrome import plot
from ui.text import literal

#: The first window choice: the pixels exactly as the model read them.
AS_LOADED = "as loaded (what the model read)"
#: The dashboard's one display size: the longest side of every film a page keeps, shows or sends to the
#: browser. The pages ask the predictor for results at this size (``predict(..., display_size=DISPLAY_SIDE)``),
#: so film, re-windowing values and heatmap arrive already matching. 768 px covers the viewer's 640 px height
#: and a study column at full resolution; 1280 px would hold ~3x the memory per film kept in a session
#: (48 films) for detail that only deep zoom shows, and the Grad-CAM map has 7x7 cells anyway.
DISPLAY_SIDE = 768
DEFAULT_OPACITY = 0.4
HEATMAP_CAPTION = ("Grad-CAM overlay: the regions that drove the model's score, not a lesion outline "
                   "(coarse: computed on the model's last feature map, then enlarged to the film).")


@dataclass(frozen=True)
class FilmView:
    """What the viewer shows: the window chosen (``None``: as loaded), overlay on/off, opacity."""

    window: object = None  # windowing.WindowPreset or None
    overlay: bool = True
    opacity: float = DEFAULT_OPACITY


def film_figure(jpeg: bytes, width: int, height: int, title: str = "", revision: str = "",
                 max_height: int = 640) -> alt.Chart:
    """A zoomable, pannable Vega-Lite chart of one encoded image (``width`` x ``height`` pixels), as wide
    as its container and ``max_height`` px high at most, the film whole and undistorted in it.

    ``revision``: part of the spec, so a new one (Reset view) redraws the chart and drops the user's zoom;
    while it and the picture stay the same, the zoom survives reruns."""
    source = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    shown = min(max_height, max(420, height))  # a small film (the 224 px set) still fills a column
    # The chart's width is the container's, known only in the browser: the scale domains are
    # Vega expressions of the plot's width and height that pad the film's axes to its aspect ratio.
    span_x = f"max({width}, width * {height} / height)"
    span_y = f"max({height}, height * {width} / width)"

    def scale(size: int, span: str, **more) -> alt.Scale:
        return alt.Scale(domain=[alt.ExprRef(f"{size / 2} - {span} / 2"), alt.ExprRef(f"{size / 2} + {span} / 2")],
                         nice=False, zero=False, **more)

    film = [{"url": source, "left": 0, "right": width, "top": 0, "bottom": height}]
    # tooltip=None: Streamlit's default tooltip would print the row, data URI included
    chart = alt.Chart(alt.NamedData(name="film")).mark_image(aspect=False, clip=True, tooltip=None).encode(
        url="url:N",
        x=alt.X("left:Q", axis=None, scale=scale(width, span_x)), x2="right:Q",
        y=alt.Y("top:Q", axis=None, scale=scale(height, span_y, reverse=True)), y2="bottom:Q",  # rows go down
    ).add_params(
        alt.selection_interval(bind="scales", name="zoom"),  # wheel zooms, drag pans, double-click resets
    ).properties(
        # padding as an object: Streamlit's frontend sets padding.bottom and breaks on a plain number
        height=shown, background="#111111", padding={side: 6 for side in ("left", "top", "right", "bottom")},
        datasets={"film": film},
        # the SVG renderer keeps one <image> element (the browser test reads where the film is drawn)
        usermeta={"embedOptions": {"renderer": "svg"}, "revision": revision},
    ).configure_view(stroke=None)
    if title:  # Vega-Lite draws titles as plain text: a file name shows as typed
        chart = chart.properties(title=alt.TitleParams(title, anchor="start", fontSize=13, color="#dddddd"))
    return chart


def window_choices(image) -> list:
    """The windows offered for ``image``: :data:`AS_LOADED` first, then ``windowing.window_presets``
    (only a :class:`LoadedImage` with kept raw values, i.e. 12/16-bit DICOM or 16-bit rasters, has any)."""
    from pneumo_core.imaging.windowing import window_presets

    presets = window_presets(image) if getattr(image, "raw", None) is not None else []
    return [AS_LOADED, *presets]


def _grey_or_rgb(image, window) -> np.ndarray:
    if window is not None:
        from pneumo_core.imaging.windowing import windowed

        return windowed(image, window)
    pixels = getattr(image, "pixels", image)
    return np.asarray(pixels)


def compose_film(image, heatmap: np.ndarray | None = None, view: FilmView = FilmView(),
                 max_side: int = DISPLAY_SIDE) -> np.ndarray:
    """The picture the viewer sends: ``image`` (a LoadedImage, or a uint8 grey/RGB array) through
    ``view.window``, with ``heatmap`` ([0, 1]) blended at ``view.opacity`` when ``view.overlay``. uint8 HxWx3.

    A prediction's display copy and heatmap (``Prediction.film``, ``Prediction.heatmap``) already match at
    :data:`DISPLAY_SIDE` and are used as they are; anything larger is shrunk to ``max_side``, and a heatmap
    of another shape is resized to the picture."""
    from pneumo_core.imaging.core import grey_to_rgb
    from pneumo_core.imaging.resample import shrink
    from pneumo_core.inference.gradcam import overlay

    base = _grey_or_rgb(image, view.window)
    if base.dtype != np.uint8:
        raise ValueError("the viewer shows 8-bit pixels; window 12/16-bit values first")
    rgb = grey_to_rgb(base) if base.ndim == 2 else base[..., :3]
    height, width = rgb.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        rgb = shrink(rgb, (max(1, round(height * scale)), max(1, round(width * scale))))
    if heatmap is not None and view.overlay and view.opacity > 0:
        rgb = overlay(rgb, heatmap, alpha=float(view.opacity))  # resizes the heatmap only when it differs
    return np.ascontiguousarray(rgb)


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """A uint8 RGB or grey image -> JPEG bytes (what travels to the browser); every page encodes here."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    try:
        Image.fromarray(np.ascontiguousarray(pixels)).save(buf, "JPEG", quality=quality)
    except (OSError, ValueError, TypeError):
        raise ValueError("the film could not be encoded for display") from None
    return buf.getvalue()


def _window_label(choice) -> str:
    if choice == AS_LOADED:
        return AS_LOADED
    return f"{choice.name} (centre {choice.center:.0f}, width {choice.width:.0f})"


def _reset(key: str) -> None:
    """"Reset view": defaults back, and a new revision of the chart's spec so it shows the whole film again."""
    for part in ("window", "overlay", "opacity"):
        st.session_state.pop(f"{key}-{part}", None)
    st.session_state[f"{key}-revision"] = st.session_state.get(f"{key}-revision", 0) + 1


def _controls(image, heatmap, key: str) -> FilmView:
    choices = window_choices(image)
    cols = st.columns([3, 2, 2, 1.3], vertical_alignment="bottom")
    window = None
    if len(choices) > 1:
        picked = cols[0].selectbox("Window / level", range(len(choices)), key=f"{key}-window",
                                   format_func=lambda i: _window_label(choices[i]),
                                   help="Re-windows the film's stored 12/16-bit values; the model's score "
                                        "does not change (it read the film as loaded).")
        window = None if picked == 0 else choices[picked]
    shown, opacity = False, DEFAULT_OPACITY
    if heatmap is not None:
        shown = cols[1].toggle("Grad-CAM overlay", value=True, key=f"{key}-overlay")
        opacity = cols[2].slider("Overlay opacity", 0.0, 1.0, DEFAULT_OPACITY, 0.05, key=f"{key}-opacity",
                                 disabled=not shown)
    cols[3].button("Reset view", key=f"{key}-reset", on_click=_reset, args=(key,),
                   help="Whole film, file's window, overlay defaults")
    return FilmView(window, shown, opacity)


def show_film(image, heatmap: np.ndarray | None = None, *, key: str, controls: bool = True, title: str = "",
              caption: str | None = None, max_height: int = 640) -> FilmView:
    """Draw one film, zoomable and pannable (scroll, drag; double-click or "Reset view" shows the whole
    film, as does any change of picture), with its Grad-CAM ``heatmap`` ([0, 1], any size) when given.

    ``image``: a prediction's display copy (``Prediction.film``) or another
    :class:`pneumo_core.imaging.core.LoadedImage` (window/level presets when it kept raw 12/16-bit
    values), or a uint8 grey/RGB array. ``key``: unique per film on the page; it names the
    widgets and keeps the zoom while the film stays the same. ``controls``: the window, overlay,
    opacity and reset widgets above the film (without them: as loaded, overlay at 0.4).
    Returns what was shown (:class:`FilmView`)."""
    view = _controls(image, heatmap, key) if controls else FilmView(overlay=heatmap is not None)
    if heatmap is None:
        view = FilmView(view.window, False, view.opacity)
    rgb = compose_film(image, heatmap, view)
    if controls:  # room for the chart's hover toolbar, which would otherwise cover "Reset view"
        st.space("small")
    # a new revision on "Reset view" redraws the chart, dropping the user's zoom even when the picture is unchanged
    revision = f"{key}:{st.session_state.get(f'{key}-revision', 0)}"
    plot(film_figure(encode_jpeg(rgb), rgb.shape[1], rgb.shape[0], title=title, revision=revision,
                     max_height=max_height), key=f"{key}-figure")
    notes = []
    if view.window is not None:
        # a window's name can come from the DICOM header (Window Center & Width Explanation)
        label = literal(_window_label(view.window))
        notes.append(f"Window: {label}, {view.window.function}; display only, the score "
                     "is from the film as loaded.")
    if heatmap is not None and view.overlay:
        notes.append(HEATMAP_CAPTION)
    if caption:
        notes.append(caption)
    if notes:
        st.caption(" ".join(notes))
    return view

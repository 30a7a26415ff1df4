"""A film viewer in the browser: zoom (scroll wheel, box, double-click to reset) and pan (drag) on
the film, optionally with its Grad-CAM overlay, drawn by Plotly from an encoded JPEG.

The image travels as one data URI (``go.Image(source=...)``): a ``z`` array of pixel values would
be megabytes of JSON for a 768 px film. Window/level, overlay and opacity are applied on the server
and the new picture replaces the old one; the zoom is kept (``uirevision``) while the same film is
shown.
"""
from __future__ import annotations

import base64

import plotly.graph_objects as go
import streamlit as st

VIEWER_CONFIG = {"scrollZoom": True, "displaylogo": False, "doubleClick": "reset",
                 "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}


def film_figure(jpeg: bytes, width: int, height: int, title: str = "", revision: str = "",
                max_height: int = 640) -> go.Figure:
    """A zoomable, pannable Plotly figure of one encoded image (``width`` x ``height`` pixels).

    ``revision``: keeps the user's zoom across reruns while it stays the same (use the film's id)."""
    source = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    fig = go.Figure(go.Image(source=source, hoverinfo="skip"))
    shown = min(max_height, max(240, height))
    fig.update_layout(
        title={"text": title, "x": 0.0, "font": {"size": 13}} if title else None,
        dragmode="pan", height=shown, margin={"l": 0, "r": 0, "t": 28 if title else 0, "b": 0},
        uirevision=revision or None, paper_bgcolor="#111", plot_bgcolor="#111",
        xaxis={"visible": False, "range": [0, width], "constrain": "domain"},
        yaxis={"visible": False, "range": [height, 0], "scaleanchor": "x", "constrain": "domain"},
    )
    return fig


def show_film(jpeg: bytes, width: int, height: int, key: str, title: str = "", caption: str | None = None) -> None:
    """Draw :func:`film_figure` at full width with scroll-zoom on; ``key`` identifies the widget
    and keeps the zoom while the film stays the same."""
    fig = film_figure(jpeg, width, height, title=title, revision=key)
    st.plotly_chart(fig, width="stretch", theme=None, key=key, config=VIEWER_CONFIG)
    if caption:
        st.caption(caption)

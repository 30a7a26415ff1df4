"""Page chrome every page shares: the app's title, the research-use disclaimer, Markdown files
and charts drawn the same way everywhere."""
from __future__ import annotations

from pathlib import Path

import altair as alt
import streamlit as st

from pneumo_core.config import DISCLAIMER, DISCLAIMER_DETAIL

APP_TITLE = "Pneumonia chest X-ray workbench"
SIDEBAR_NOTE = "Research and teaching use only; not a diagnostic device."


def disclaimer() -> None:
    """The research/teaching disclaimer at the top of the page and in the sidebar."""
    st.warning(f"{DISCLAIMER} {DISCLAIMER_DETAIL}", icon=":material/warning:")
    st.sidebar.caption(SIDEBAR_NOTE)


def render_markdown_file(path: Path, missing_message: str) -> bool:
    """Show a Markdown file (e.g. the model card); ``missing_message`` when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        st.info(missing_message, icon=":material/description:")
        return False
    st.markdown(text)
    return True


def plot(chart: alt.TopLevelMixin, caption: str | None = None, key: str | None = None,
         width: str | int = "stretch") -> None:
    """An Altair (Vega-Lite) chart at full width in its own colours (``theme=None``), with an optional caption;
    ``width="content"`` keeps the chart's own size (a square ROC plot: stretching sets only its width)."""
    st.altair_chart(chart, width=width, theme=None, key=key)
    if caption:
        st.caption(caption)

"""Streamlit pieces of the reader quiz: the shared store, page chrome, blind film display, the
reader's token (session state and the ``?reader=`` query parameter) and error messages.

The quiz rules live in :mod:`pneumo_core.quiz.rules`; every refusal there is a :class:`QuizError`
whose text is one line for the user, shown here with ``st.error``, never as a traceback.
Nicknames are shown as plain text only (``st.text``, ``st.dataframe`` cells, Vega-Lite labels, which are
plain text; never ``st.table``, whose cells are Markdown).
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from pneumo_core.errors import QuizError, StorageError, UnknownReader
from pneumo_core.quiz.database import default_url
from pneumo_core.quiz.rules import QuizStore, ReaderState
from ui.chrome import plot
from ui.viewer import encode_jpeg, film_figure

TOKEN_KEY = "quiz_reader_token"  # st.session_state key of the reader's token
TOKEN_PARAM = "reader"  # the query parameter holding it, so a reload or a new tab resumes
FLASH_KEY = "quiz_flash"  # a message from a button callback, shown on the next run
VIEW_SIDE = 1024  # longest side of the film sent to the browser: enough to zoom, small to send


@st.cache_resource(show_spinner=False, max_entries=4)
def _store(url: str) -> QuizStore:
    return QuizStore(url)


def get_store() -> QuizStore | None:
    """The quiz store of this server (one per database URL, shared by every session), or None
    after showing why the database cannot be used. A failure is not cached: the next run retries."""
    try:
        return _store(default_url())
    except QuizError as exc:
        st.error(f"The quiz database cannot be used: {exc}", icon=":material/database:")
        return None


def show_error(exc: QuizError, what: str = "") -> None:
    """One clear line for a refusal of the store; database problems get their own icon."""
    icon = ":material/database:" if isinstance(exc, StorageError) else ":material/error:"
    text = str(exc)
    st.error(f"{what}{text}" if what else text[:1].upper() + text[1:], icon=icon)


def flash(kind: str, text: str) -> None:
    """Keep a message from a callback (which runs before the page is drawn) for this run."""
    st.session_state[FLASH_KEY] = (kind, text)


def show_flash() -> None:
    """Show and forget the message kept by :func:`flash`."""
    kept = st.session_state.pop(FLASH_KEY, None)
    if kept:
        kind, text = kept
        (st.error if kind == "error" else st.success)(text, icon=":material/error:" if kind == "error"
                                                      else ":material/check_circle:")


# ---------------------------------------------------------------------------- the reader's token
def current_token() -> str | None:
    """The reader's token from this session, else from the URL (a reload or a dropped connection)."""
    token = st.session_state.get(TOKEN_KEY) or st.query_params.get(TOKEN_PARAM)
    return str(token) if token else None


def remember_token(token: str) -> None:
    """Keep the token in the session and in the URL (bookmark or reload it to resume)."""
    st.session_state[TOKEN_KEY] = token
    st.query_params[TOKEN_PARAM] = token


def forget_token() -> None:
    """Leave the quiz in this browser tab (the answers stay stored)."""
    st.session_state.pop(TOKEN_KEY, None)
    if TOKEN_PARAM in st.query_params:
        del st.query_params[TOKEN_PARAM]


def resume_reader(store: QuizStore) -> ReaderState | None:
    """The reader's state from their token, or None (no token; or an unknown one, said and forgotten)."""
    token = current_token()
    if not token:
        return None
    try:
        state = store.resume(token)
    except UnknownReader as exc:
        forget_token()
        show_error(exc)
        return None
    remember_token(token)
    return state


# ---------------------------------------------------------------------------- films
@st.cache_data(show_spinner=False, max_entries=64)
def film_jpeg(path: str, mtime_ns: int) -> tuple[bytes, int, int] | None:
    """A film as a display JPEG (longest side at most ``VIEW_SIDE``) with its width and height; None
    when it cannot be read. Read fresh each time the file changes (``mtime_ns``)."""
    import numpy as np
    from PIL import Image

    from pneumo_core.imaging.resample import shrink

    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("L"))
    except (OSError, ValueError):
        return None
    height, width = pixels.shape
    scale = min(1.0, VIEW_SIDE / max(height, width))
    if scale < 1.0:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        pixels = shrink(pixels, (height, width))
    return encode_jpeg(pixels, 92), width, height


def show_blind_film(path: Path, position: int, n_films: int, key: str) -> None:
    """Film ``position`` of ``n_films``, zoomable, titled by its number only: no file name, no model output."""
    shown = film_jpeg(str(path), path.stat().st_mtime_ns) if path.is_file() else None
    if shown is None:
        st.error(f"Film {position} cannot be read on this server (its file is missing or damaged); answer it as "
                 "you judge best or ask your teacher.", icon=":material/broken_image:")
        return
    jpeg, width, height = shown
    # the JPEG is encoded once per film (cached); the viewer's window/overlay controls are not offered
    # here: a blind read shows the film as the model read it, without a heatmap
    plot(film_figure(jpeg, width, height, title=f"Film {position} of {n_films}", revision=key), key=key)
    st.caption("Scroll to zoom, drag to pan, double-click to reset.")

"""The Analyse page's study: the uploader's files, the files kept from before a visit to another
page, and the cap on what a browser session keeps.

Each uploaded file is read and hashed once (keyed by the uploader's file id), not on every
rerun. Bytes stay in this browser session's memory only: nothing is written to disk or logged.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple

import streamlit as st

from pneumo_core.imaging.decode import MAX_PIXELS, READABLE_SUFFIXES

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in READABLE_SUFFIXES]
UPLOADER_KEY = "uploads"
UPLOADED_KEY = "_study_uploaded"  # Films of the uploader, copied by its on_change
KEPT_KEY = "_study_kept"  # Films kept from before a visit to another page, which empties the uploader
TOO_LARGE_KEY = "_study_too_large"
FILMS_BY_ID_KEY = "_films_by_upload_id"  # uploader file id -> Film: each file read and hashed once
STUDY_MAX_BYTES = 64 * 2**20  # per browser session; a larger study is shown while the page is open only


class Film(NamedTuple):
    """One uploaded file: its name, bytes and SHA-256 (the key of its scored result)."""

    name: str
    data: bytes
    sha256: str


def film_of(name: str, data: bytes) -> Film:
    """A :class:`Film` from a name and bytes (hashes them)."""
    return Film(name, data, hashlib.sha256(data).hexdigest())


def _films(uploaded) -> list[Film]:
    """The uploader's files as Films, each read and hashed on its first rerun only."""
    known = st.session_state.setdefault(FILMS_BY_ID_KEY, {})
    films = []
    for upload in uploaded or []:
        upload_id = getattr(upload, "file_id", None) or (upload.name, upload.size)
        if upload_id not in known:
            known[upload_id] = film_of(upload.name, upload.getvalue())
        films.append(known[upload_id])
    current = {getattr(u, "file_id", None) or (u.name, u.size) for u in uploaded or []}
    for upload_id in [k for k in known if k not in current]:  # removed from the uploader: forget it
        del known[upload_id]
    return films


def upload_label() -> str:
    """The uploader's label: formats and limits (the size limit from .streamlit/config.toml)."""
    mb = st.get_option("server.maxUploadSize")
    return (f"Chest X-rays: DICOM, PNG, JPEG, TIFF, BMP or WebP; greyscale or colour, 8- or 16-bit; up to {mb} MB "
            f"and {MAX_PIXELS // 1_000_000} megapixels a file")


def remember_uploads() -> None:
    """The uploader's ``on_change``: a copy of its files, so they survive a visit to another
    page (Streamlit empties the uploader when its page is left)."""
    films = _films(st.session_state.get(UPLOADER_KEY))
    kept = st.session_state.get(KEPT_KEY, [])
    if sum(len(f.data) for f in films) + sum(len(f.data) for f in kept) > STUDY_MAX_BYTES:
        st.session_state.pop(UPLOADED_KEY, None)
        st.session_state[TOO_LARGE_KEY] = True
        return
    st.session_state.pop(TOO_LARGE_KEY, None)
    st.session_state[UPLOADED_KEY] = films


def forget_uploads() -> None:
    """The Clear button: drop the files kept from before a visit to another page."""
    for key in (KEPT_KEY, UPLOADED_KEY, TOO_LARGE_KEY):
        st.session_state.pop(key, None)


def current_study(uploaded) -> tuple[list[Film], int]:
    """(Films to show, how many of them were kept from before a visit to another page). Kept
    files stay until Clear; files added or removed in the uploader come and go."""
    if not uploaded and st.session_state.get(UPLOADED_KEY):  # the uploader was emptied by leaving the page
        st.session_state[KEPT_KEY] = st.session_state.get(KEPT_KEY, []) + st.session_state.pop(UPLOADED_KEY)
    kept = st.session_state.get(KEPT_KEY, [])
    if st.session_state.get(TOO_LARGE_KEY):
        st.caption(f"These files come to more than {STUDY_MAX_BYTES // 2**20} MB: they are shown while this "
                   "page is open but not kept when you visit another page.")
    seen = {(f.name, f.sha256) for f in kept}
    return kept + [f for f in _films(uploaded) if (f.name, f.sha256) not in seen], len(kept)

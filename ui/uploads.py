"""The Analyse page's study: the uploader's files, the files kept from before a visit to another
page, the caps on what a browser session scores and keeps, and the names files are shown under.

Each uploaded file is read and hashed once (keyed by the uploader's file id), not on every
rerun. Bytes stay in this browser session's memory only: nothing is written to disk or logged.
File names (often ``SURNAME_DOB.dcm``) can be replaced by ``film <short content hash>`` on the page, in the
review CSV and in the report PNG (:func:`pseudonym`; on by default on a server reachable from the network).
"""
from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import NamedTuple

import streamlit as st

from pneumo_core.config import dashboard_limit, hide_file_names_setting
from pneumo_core.imaging.decode import MAX_PIXELS, READABLE_SUFFIXES

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in READABLE_SUFFIXES]
UPLOADER_KEY = "uploads"
UPLOADED_KEY = "_study_uploaded"  # Films of the uploader, copied by its on_change
KEPT_KEY = "_study_kept"  # Films kept from before a visit to another page, which empties the uploader
TOO_LARGE_KEY = "_study_too_large"
FILMS_BY_ID_KEY = "_films_by_upload_id"  # uploader file id -> Film: each file read and hashed once
STUDY_MAX_BYTES = 64 * 2**20  # per browser session; a larger study is shown while the page is open only
HIDE_NAMES_KEY = "hide_file_names"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def pseudonym(film: Film) -> Film:
    """``film`` under a name that says nothing of the patient: ``film 1a2b3c4d.dcm`` (the first 8 hex digits of
    its SHA-256, the same on every rerun and page; the suffix kept when it is one the reader knows)."""
    suffix = PurePath(film.name).suffix.lower()
    return film._replace(name=f"film {film.sha256[:8]}{suffix if suffix in READABLE_SUFFIXES else ''}")


def hide_names_by_default() -> bool:
    """``PNEUMO_HIDE_FILE_NAMES`` when set; else True unless the server listens on this machine only (a server
    others reach may be watched or screen-shared, and its CSV and PNG downloads travel)."""
    setting = hide_file_names_setting()
    if setting is not None:
        return setting
    return str(st.get_option("server.address") or "") not in LOOPBACK


def within_limits(films: list[Film]) -> list[Film]:
    """The first films that fit this session's limits (count and total size, :func:`config.dashboard_limit`);
    says on the page, with the numbers, when some are left out."""
    max_files, max_mb = dashboard_limit("PNEUMO_MAX_UPLOADS"), dashboard_limit("PNEUMO_MAX_UPLOAD_MB")
    kept, total = [], 0
    for film in films:
        if len(kept) == max_files or total + len(film.data) > max_mb * 2**20:
            break
        kept.append(film)
        total += len(film.data)
    if len(kept) < len(films):
        st.warning(f"{len(films) - len(kept)} of {len(films)} files are not scored: this server scores at most "
                   f"{max_files} files and {max_mb} MB per session. Remove some files (or Clear) to score others.",
                   icon=":material/block:")
    return kept


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

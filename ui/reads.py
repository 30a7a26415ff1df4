"""A reader's own read of each film on the Analyse page (NORMAL, PNEUMONIA or unsure, and the reference standard
when known), saved to the project's database as soon as it is chosen (:mod:`pneumo_core.storage.reads`).

The reader is the signed-in user, or on a local install a nickname typed once per browser session (never a real
name). Each widget starts from what the database holds for this reader, film and model version, so a reload, a
second visit or a second reader each see their own read. A save that fails (database locked or read-only) keeps the
choice in this session, says so, and is tried again on the next run; nothing chosen is lost or stored twice.
"""
from __future__ import annotations

import hashlib

import streamlit as st

from pneumo_core.access.policy import Action, decide
from pneumo_core.errors import NicknameError, SiteReadError, StorageError, first_line
from pneumo_core.quiz.rules import check_nickname
from pneumo_core.storage.reads import READ_CHOICES, REFERENCE_SOURCES, FilmScore, pixels_sha256, site_reads_db
from ui.access import requester
from ui.text import literal

READER_KEY = "_site_reader"  # the nickname typed on a local install
PENDING_KEY = "_site_reads_pending"  # widget base -> (reader, FilmScore, read, reference, source) not saved yet
STATUS_KEY = "_site_reads_status"  # widget base -> (kind, one line): saved, waiting, error
OTHER_KEY = "_site_reads_other"  # widget base -> this reader's reads of the film under other model versions
NOT_KNOWN = "not known"
READ_LABELS = {"NORMAL": "NORMAL", "PNEUMONIA": "PNEUMONIA", "UNSURE": "unsure"}


def current_reader() -> tuple[str | None, str | None, bool]:
    """(who records reads in this session, or None; the one-line reason when this session may not record any;
    whether that is a signed-in user rather than a nickname)."""
    who = requester()
    decision = decide(Action.SITE_READ, who)
    if not decision.allowed:
        return None, decision.reason, False
    if who.signed_in:
        return who.identity, None, True
    return st.session_state.get(READER_KEY), None, False


def film_score(scored, predictor, threshold: float) -> FilmScore | None:
    """What a read stores of a scored film (``ui.study.ScoredFilm``), or None when the film has no score."""
    pred = scored.pred
    if pred.error or pred.p_pneumonia is None or not predictor.sha256:
        return None
    content = getattr(scored, "content_sha256", None)
    if content is None and pred.film is not None:
        content = pixels_sha256(pred.film.pixels)
    if content is None:
        return None
    return FilmScore(content, predictor.name, predictor.sha256, float(pred.p_pneumonia), float(threshold),
                     None if pred.ood_distance is None else float(pred.ood_distance))


def _set_nickname(input_key: str) -> None:
    try:
        st.session_state[READER_KEY] = check_nickname(st.session_state.get(input_key, ""))
        st.session_state.pop(f"{input_key}_error", None)
    except NicknameError as exc:
        st.session_state[f"{input_key}_error"] = str(exc)


def _nickname_box(key: str) -> None:
    input_key = f"site_nick_{key}"
    st.text_input("Your nickname, to record your reads (any name you like; no real name)", key=input_key,
                  on_change=_set_nickname, args=(input_key,), max_chars=40)
    if st.session_state.get(f"{input_key}_error"):
        st.warning(st.session_state[f"{input_key}_error"].capitalize() + ".")


def _status(base: str, kind: str, text: str) -> None:
    st.session_state.setdefault(STATUS_KEY, {})[base] = (kind, text)


def _save_now(base: str) -> None:
    """Try the pending save of ``base``; success clears it, a database failure keeps it for the next run."""
    pending = st.session_state.get(PENDING_KEY, {})
    if base not in pending:
        return
    reader, film, read, reference, source = pending[base]
    try:
        saved = site_reads_db().record(reader, film, read, reference, source)
    except (StorageError, SiteReadError) as exc:
        _status(base, "error", f"Not saved: {first_line(exc)}. Your choice is kept in this session and saved "
                               "automatically on the next change or rerun.")
        return
    del pending[base]
    changed = f", saved {saved.saves} times" if saved.saves > 1 else ""
    _status(base, "saved", f"Saved {saved.updated_at:%Y-%m-%d %H:%M} UTC as {READ_LABELS[saved.read]}"
                           + (f", reference standard {saved.reference} ({saved.reference_source})"
                              if saved.reference else "") + f"{changed}.")


def _on_change(base: str, reader: str, film: FilmScore) -> None:
    """A widget changed: the choice becomes pending and is saved at once when complete."""
    read = st.session_state.get(f"{base}_read")
    reference = st.session_state.get(f"{base}_ref", NOT_KNOWN)
    source = st.session_state.get(f"{base}_src")
    reference = None if reference == NOT_KNOWN else reference
    if read is None:
        _status(base, "waiting", "Choose your read first: the reference standard is kept here and saved with it.")
        return
    if reference is not None and source is None:
        _status(base, "waiting", "Choose where the reference standard comes from (or set it back to "
                                 f"'{NOT_KNOWN}') to save.")
        return
    st.session_state.setdefault(PENDING_KEY, {})[base] = (reader, film, read, reference,
                                                           source if reference is not None else None)
    _save_now(base)


def _use_earlier(base: str, reader: str, film: FilmScore, earlier) -> None:
    st.session_state[f"{base}_read"] = earlier.read
    st.session_state[f"{base}_ref"] = earlier.reference or NOT_KNOWN
    st.session_state[f"{base}_src"] = earlier.reference_source
    _on_change(base, reader, film)


def _seed(base: str, reader: str, film: FilmScore) -> None:
    """Start the widgets from a choice still pending in this session, else from the database."""
    if f"{base}_read" in st.session_state:
        return
    pending = st.session_state.get(PENDING_KEY, {}).get(base)
    if pending is not None:
        _, _, read, reference, source = pending
    else:
        try:
            db = site_reads_db()
            stored = db.read_of(reader, film.film_sha256, film.model_sha256)
            st.session_state.setdefault(OTHER_KEY, {})[base] = (
                [] if stored is not None else db.other_versions(reader, film.film_sha256, film.model_sha256))
        except StorageError as exc:
            _status(base, "error", f"Your earlier read cannot be looked up: {first_line(exc)}.")
            stored = None
        read, reference, source = ((stored.read, stored.reference, stored.reference_source) if stored
                                   else (None, None, None))
        if stored is not None:
            _status(base, "saved", f"Saved {stored.updated_at:%Y-%m-%d %H:%M} UTC as {READ_LABELS[stored.read]}"
                                   + (f", reference standard {stored.reference} ({stored.reference_source})"
                                      if stored.reference else "") + ".")
    st.session_state[f"{base}_read"] = read
    st.session_state[f"{base}_ref"] = reference or NOT_KNOWN
    st.session_state[f"{base}_src"] = source


def read_widget(scored, predictor, threshold: float, key: str) -> None:
    """The reader's read of one scored film (nothing for a film without a score). ``key``: unique on the page."""
    film = film_score(scored, predictor, threshold)
    if film is None:
        return
    st.markdown("**Your read** (for this site's figures on the *Your site* page; saved as soon as you choose)")
    reader, refusal, signed_in = current_reader()
    if refusal:
        st.caption(refusal)
        return
    if reader is None:
        _nickname_box(key)
        return
    token = hashlib.sha256(f"{reader}\x00{film.film_sha256}\x00{film.model_sha256}".encode()).hexdigest()[:16]
    base = f"site_read_{token}"
    _seed(base, reader, film)
    if base in st.session_state.get(PENDING_KEY, {}):
        _save_now(base)  # a save the database refused earlier: try again
    args = (base, reader, film)
    left, middle, right = st.columns([1.4, 1, 1], vertical_alignment="bottom")
    left.radio(f"Read by {literal(reader)}", READ_CHOICES, key=f"{base}_read", index=None, horizontal=True,
               format_func=READ_LABELS.get, on_change=_on_change, args=args)
    middle.selectbox("Reference standard, when known", [NOT_KNOWN, "NORMAL", "PNEUMONIA"], key=f"{base}_ref",
                     on_change=_on_change, args=args)
    right.selectbox("Its source", REFERENCE_SOURCES, key=f"{base}_src", index=None, placeholder="choose",
                    on_change=_on_change, args=args)
    kind, text = st.session_state.get(STATUS_KEY, {}).get(base, (None, ""))
    if kind == "error":
        st.error(text, icon=":material/sync_problem:")
    elif kind == "waiting":
        st.warning(text, icon=":material/pending:")
    elif kind == "saved":
        st.caption(text)
    earlier = st.session_state.get(OTHER_KEY, {}).get(base) or []
    if earlier and st.session_state.get(f"{base}_read") is None:
        first = earlier[0]
        st.info(f"You read this film as {READ_LABELS[first.read]} on {first.updated_at:%Y-%m-%d} when it was scored "
                f"by another version of this model (SHA-256 {first.model_sha256[:12]}...). Reads count per model "
                "version, since a score belongs to the model that gave it.", icon=":material/history:")
        st.button("Record the same read for this version", key=f"{base}_earlier", on_click=_use_earlier,
                  args=(*args, first))
    if not signed_in:
        st.button("Another reader", key=f"{base}_switch", on_click=lambda: st.session_state.pop(READER_KEY, None),
                  help="Record reads under another nickname on this computer", icon=":material/switch_account:")

"""The "From PACS" film source: search a DICOMweb server, pick studies, retrieve and score their
CR/DX films with progress, and store one research-use result per scored film back to the server.

The server and its credentials come from settings only (``PNEUMO_DICOMWEB_*`` in the environment
or ``.streamlit/secrets.toml``, see :mod:`pneumo_core.pacs.settings`): the page never offers a URL
box, since a URL a browser user could type would let anyone make this server fetch arbitrary
addresses. Credentials are never shown. Studies are listed without patient identifiers: a short
hash of the Study Instance UID stands for it, and UIDs in messages are replaced by their hash.
"""
from __future__ import annotations

import re

import streamlit as st

from pneumo_core.access.policy import Action
from pneumo_core.config import dashboard_limit
from pneumo_core.errors import PacsError
from pneumo_core.pacs.dicomweb import InstanceRef, Pacs, ScoredInstance, score_instances, store_results
from pneumo_core.pacs.secondary_capture import short_id
from pneumo_core.pacs.settings import (
    DEFAULT_MODALITIES,
    ENV_CA_BUNDLE,
    ENV_PASSWORD,
    ENV_TIMEOUT,
    ENV_TOKEN,
    ENV_URL,
    ENV_USER,
    PacsSettings,
    load_settings,
    pacs_configured,
)
from pneumo_core.review.decisions import at_threshold
from ui.access import audit, pacs_gate, still_allowed
from ui.cache import BoundedPredictor
from ui.text import literal
from ui.viewer import DISPLAY_SIDE

SETTINGS_HELP = f"""
**No PACS is configured.** This workbench reads films from a DICOMweb server (e.g. Orthanc with its
DICOMweb plugin) named by the person running it, never by a page's visitor. Set, in the environment
or in `.streamlit/secrets.toml`:

- `{ENV_URL}`: the server's DICOMweb root, e.g. `https://pacs.example.org/dicom-web`
- `{ENV_USER}` and `{ENV_PASSWORD}` (basic sign-in), or `{ENV_TOKEN}` (bearer token)
- optionally `{ENV_CA_BUNDLE}` (a private certificate authority; TLS is always verified) and
  `{ENV_TIMEOUT}` (seconds per call, default 10)

then restart the dashboard. See docs/pacs.md.
"""
# DICOM UIDs in messages (five or more dot-separated numbers: never an IPv4 address)
_UID_IN_TEXT = re.compile(r"\b\d+(?:\.\d+){4,}\b")


def hide_uids(text: str) -> str:
    """``text`` with every DICOM UID replaced by :func:`short_id`."""
    return _UID_IN_TEXT.sub(lambda match: short_id(match.group(0)), str(text))


def film_name(ref: InstanceRef, number: int) -> str:
    """How the page names one retrieved film: ``study #1a2b3c4d, film 2``."""
    return f"study {short_id(ref.study_uid)}, film {number}"


def _settings() -> PacsSettings | None:
    """The configured settings; None (and a note or one error line on the page) when unusable."""
    try:
        secrets = st.secrets
        if not pacs_configured(secrets=secrets):
            st.info(SETTINGS_HELP)
            return None
        settings = load_settings(secrets=secrets)
    except PacsError as exc:
        st.error(f"PACS settings: {literal(exc)}")
        return None
    st.caption(f"PACS: {literal(settings.location)} · sign-in: {settings.auth_kind} · timeout "
               f"{settings.timeout:g} s per call · set by the operator, not from this page")
    if settings.cleartext_credentials:
        st.warning(f"Credentials go unencrypted (http://) to {literal(settings.location)}: use https:// outside a "
                   "trusted network.")
    return settings


def _search(pacs: Pacs, key: str) -> None:
    with st.form(f"{key}-search"):
        cols = st.columns([2, 1.3, 1.3, 1.4, 1])
        patient = cols[0].text_input("Patient ID (optional)", key=f"{key}-patient", max_chars=64,
                                     help="Sent to the PACS only; never shown, logged or stored here.")
        date_from = cols[1].date_input("From", value=None, key=f"{key}-from")
        date_to = cols[2].date_input("To", value=None, key=f"{key}-to")
        modalities = cols[3].multiselect("Modality", list(DEFAULT_MODALITIES), default=list(DEFAULT_MODALITIES),
                                         key=f"{key}-modality")
        max_studies = dashboard_limit("PNEUMO_MAX_PACS_STUDIES")
        limit = cols[4].number_input("Limit", 1, max_studies, min(20, max_studies), key=f"{key}-limit",
                                     help=f"Studies listed per search; this server lists at most {max_studies}.")
        submitted = st.form_submit_button("Search studies")
    if not submitted:
        return
    st.session_state.pop(f"{key}-studies", None)
    st.session_state.pop(f"{key}-cut", None)
    if not modalities:
        st.error("Pick at least one modality (CR or DX).")
        return
    try:
        with st.spinner("Searching the PACS..."):
            # one more than the limit: whether the list was cut
            found = pacs.search_studies(patient_id=patient or None, date_from=date_from, date_to=date_to,
                                        modalities=tuple(modalities), limit=int(limit) + 1)
    except PacsError as exc:
        audit(Action.PACS_SEARCH, 0, outcome="error")
        st.error(literal(hide_uids(exc)))
        return
    if len(found) > int(limit):
        found = found[: int(limit)]
        st.session_state[f"{key}-cut"] = int(limit)
    audit(Action.PACS_SEARCH, len(found), [study.study_uid for study in found])
    st.session_state[f"{key}-studies"] = (found, tuple(modalities))


def _study_label(study) -> str:
    # the year at most, and no Study Description (free text that can name the patient)
    parts = [short_id(study.study_uid), study.date[:4] if study.date else "no date",
             "/".join(study.modalities) or "?",
             f"{study.instances} instances" if study.instances is not None else "instances: ?"]
    return " · ".join(parts)


def _pick(key: str):
    """The study picker; the studies chosen and the modalities searched, or None."""
    if f"{key}-studies" not in st.session_state:
        return None  # no search yet
    found, modalities = st.session_state[f"{key}-studies"]
    if not found:
        st.info(f"No {'/'.join(modalities)} study matches this search.")
        return None
    cut = st.session_state.get(f"{key}-cut")
    if cut:
        st.info(f"More studies match than the limit of {cut}: the first {cut} are listed. Narrow the search "
                f"(dates, patient ID) or raise the limit (this server lists at most "
                f"{dashboard_limit('PNEUMO_MAX_PACS_STUDIES')}).", icon=":material/filter_list:")
    by_label = {_study_label(s): s for s in found}
    chosen = st.multiselect(f"Studies found ({len(found)}): pick the ones to score", list(by_label),
                            default=list(by_label), key=f"{key}-chosen",
                            help="Studies are named by a short hash of their UID; no patient identifier is shown.")
    return [by_label[label] for label in chosen], modalities


def _retrieve_and_score(pacs: Pacs, predictor, studies, modalities, key: str) -> None:
    """List, retrieve and score every CR/DX film of ``studies``; one study's failure never stops the others."""
    refs, problems = [], []
    max_films = dashboard_limit("PNEUMO_MAX_PACS_FILMS")
    for study in studies:
        try:
            found = pacs.list_instances(study.study_uid, modalities)
            if not found:
                raise PacsError(f"study {study.study_uid} has no {'/'.join(modalities)} instance")
            refs += found
        except PacsError as exc:
            problems.append(hide_uids(exc))
    if len(refs) > max_films:
        problems.append(f"{len(refs)} films found: this server scores at most {max_films} per retrieval, so only "
                        f"the first {max_films} were scored. Pick fewer studies to score the others.")
        refs = refs[:max_films]
    bar = st.progress(0.0, text="Retrieving and scoring...")

    def progress(done: int, total: int, ref) -> None:
        text = f"Retrieving and scoring film {done + 1} of {total}" if ref is not None else f"{total} films done"
        bar.progress(done / max(total, 1), text=text)

    scored = score_instances(pacs, BoundedPredictor(predictor), refs, explain=True, progress=progress, keep_loaded=True,
                             display_size=DISPLAY_SIDE) if refs else []
    bar.progress(1.0, text=f"{len(scored)} film(s) retrieved and scored" if scored else "No film to score")
    audit(Action.PACS_RETRIEVE, len({ref.study_uid for ref in refs}), [study.study_uid for study in studies],
          outcome="error" if problems else "ok")
    st.session_state[f"{key}-scored"] = scored
    st.session_state[f"{key}-problems"] = problems
    st.session_state.pop(f"{key}-stored", None)


def film_names(scored: list[ScoredInstance]) -> list[str]:
    """Page names for ``scored``, in order: :func:`film_name` numbered within each study."""
    numbers: dict[str, int] = {}
    names = []
    for item in scored:
        numbers[item.ref.study_uid] = numbers.get(item.ref.study_uid, 0) + 1
        names.append(film_name(item.ref, numbers[item.ref.study_uid]))
    return names


def _summary(predictor, scored: list[ScoredInstance], threshold: float) -> None:
    rows = []
    for name, item in zip(film_names(scored), scored):
        pred = item.prediction
        rows.append({"film": name, "label": pred.label or "-",
                     "P(pneumonia)": None if pred.p_pneumonia is None else round(pred.p_pneumonia, 3),
                     "problem": hide_uids(pred.error) if pred.error else ""})
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption(f"Model {predictor.name}, threshold {threshold:.3f} (the one in force on this page; the results "
               "stored back carry it), on films retrieved from the PACS. Research and teaching tool, not a "
               "diagnostic device.")


def _store(pacs: Pacs, predictor, scored: list[ScoredInstance], key: str) -> None:
    if not still_allowed(Action.PACS_STORE):  # a callback: runs before this run's gate
        return
    stored = store_results(pacs, scored, getattr(predictor, "sha256", None))
    failed = [hide_uids(note) for item in scored for note in item.prediction.notes
              if note.startswith("result not stored")]
    audit(Action.PACS_STORE, len({item.ref.study_uid for item, ref in zip(scored, stored) if ref is not None}),
          [item.ref.study_uid for item in scored if item.prediction.label], outcome="error" if failed else "ok")
    st.session_state[f"{key}-stored"] = (sum(ref is not None for ref in stored), failed)


def pacs_source(predictor, key: str = "pacs", threshold: float | None = None) -> list[ScoredInstance]:
    """Render the "From PACS" source and return the films retrieved and scored so far (this session).

    ``predictor``: a :class:`pneumo_core.inference.predictor.Predictor` (its ``predict``, ``threshold``, ``name``,
    ``sha256``). ``key``: prefix of every widget and ``st.session_state`` entry, unique on the page.
    ``threshold``: the threshold in force on the page (an adopted site threshold, a preset, the slider; None: the
    predictor's own): the summary's labels and the results stored back follow it, as the studies drawn do.
    Each :class:`pneumo_core.pacs.dicomweb.ScoredInstance` has ``ref`` (name it on the page with
    :func:`film_names`, never by its UIDs), ``prediction`` (label, p_pneumonia, threshold, model,
    notes, error, and ``film`` and ``heatmap`` at :data:`ui.viewer.DISPLAY_SIDE`; ``prediction.file`` holds
    UIDs: do not show it, and pass ``error`` and ``notes`` through :func:`hide_uids`) and ``loaded`` (the
    same display copy, for :func:`ui.viewer.show_film`; ``None`` when the film failed). Returns ``[]``
    (after a short explanation) when no PACS is configured, and when this session may not use the PACS
    (:func:`ui.access.pacs_gate`). Every search, retrieval and store-back goes to the audit trail."""
    if not pacs_gate():
        return []
    settings = _settings()
    if settings is None:
        return []
    try:
        pacs = Pacs(settings)
    except PacsError as exc:
        st.error(f"PACS settings: {literal(exc)}")
        return []
    _search(pacs, key)
    picked = _pick(key)
    if picked is not None:
        studies, modalities = picked
        if st.button("Retrieve and score", key=f"{key}-retrieve", disabled=not studies, type="primary"):
            _retrieve_and_score(pacs, predictor, studies, modalities, key)
    for problem in st.session_state.get(f"{key}-problems", []):
        st.warning(literal(problem))
    scored = st.session_state.get(f"{key}-scored", [])
    if not scored:
        return []
    threshold = predictor.threshold if threshold is None else float(threshold)
    for item in scored:  # the page's threshold may have moved since the films were scored
        item.prediction = at_threshold(item.prediction, threshold)
    _summary(predictor, scored, threshold)
    if any(item.prediction.label for item in scored):
        done = bool(st.session_state.get(f"{key}-stored", (0,))[0])  # stored once: a second click would duplicate
        # a callback, so the button is already disabled in the run that follows the click
        st.button("Store results to PACS", key=f"{key}-store", disabled=done, on_click=_store,
                  args=(pacs, predictor, scored, key),
                  help="One Secondary Capture per scored film (heatmap overlay, burned-in 'research use, not "
                       "for diagnosis' banner) in a new series of its study, referencing the source film.")
    if f"{key}-stored" in st.session_state:
        count, failed = st.session_state[f"{key}-stored"]
        if count:
            st.success(f"Stored {count} research-use result(s) on the PACS, in a new series of each study.")
        for message in failed:
            st.warning(literal(message))
    return scored

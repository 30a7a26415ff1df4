"""Analyse X-rays: score uploaded chest X-rays (or example films) with a Grad-CAM explanation."""
from dataclasses import replace

import streamlit as st

from pneumo_core.review import decisions as review
from ui.access import show_audit_trail
from ui.cache import get_predictor, get_reports
from ui.controls import model_picker, operating_point_picker
from ui.examples import example_picker
from ui.pacs_source import film_names, hide_uids, pacs_source
from ui.study import STUDIES_PER_PAGE, is_scored, render_review_table, render_study, score_film, scored_film, shown_page
from ui.uploads import (
    HIDE_NAMES_KEY,
    UPLOAD_TYPES,
    UPLOADER_KEY,
    current_study,
    forget_uploads,
    hide_names_by_default,
    pseudonym,
    remember_uploads,
    upload_label,
    within_limits,
)

st.title("Analyse X-rays")
st.caption("Each image is scored by the chosen model; the label depends on the operating point in the sidebar. "
           "Images stay in memory for this browser session only. A research and teaching aid: the label is the "
           "model's output, not a diagnosis.")

reps = get_reports()
variant = model_picker(reps)
if variant is None:
    st.stop()
predictor, error = get_predictor(variant)
if error:
    st.error(error)
    st.stop()
threshold, op_name = operating_point_picker(reps[variant])
alpha = st.sidebar.slider("Heatmap opacity", 0.0, 1.0, 0.4, 0.05, key="alpha", persist_state="session")

upload_tab, example_tab, pacs_tab = st.tabs(["Upload images", "Try an example film", "From PACS"])
with upload_tab:
    uploaded = st.file_uploader(upload_label(), type=UPLOAD_TYPES, accept_multiple_files=True,
                                key=UPLOADER_KEY, on_change=remember_uploads)
    films, n_kept = current_study(uploaded)
    films = within_limits(films)
    if st.toggle("Hide file names: show each file as \"film\" and a short hash of its content", key=HIDE_NAMES_KEY,
                 value=hide_names_by_default(), help="On the page, in the review table (CSV) and the report (PNG). "
                 "File names often hold a patient's name or birth date."):
        films = [pseudonym(film) for film in films]
    if not films:
        st.info("Upload one or more frontal chest X-rays to score them. Several files give a review table.",
                icon=":material/upload:")
    else:
        if n_kept:
            left, right = st.columns([4, 1], vertical_alignment="center")
            left.caption(f"Showing {review.plural(n_kept, 'file')} uploaded earlier in this session (the uploader "
                         "empties when you visit another page); files you add join them.")
            right.button("Clear", on_click=forget_uploads, icon=":material/close:", key="clear_study")
        new = sum(not is_scored(predictor, film) for film in films)
        progress = st.progress(0.0, text="Scoring...") if new > 1 else None  # none when only re-labelling
        scored = []
        for done, film in enumerate(films, start=1):
            scored.append(score_film(predictor, film))
            if progress:
                progress.progress(done / len(films), text=f"Scored {done} of {len(films)}")
        if progress:
            progress.empty()
        if len(scored) > 1:
            render_review_table([s.pred for s in scored], threshold, op_name, predictor)
        if len(scored) > STUDIES_PER_PAGE:
            st.subheader("Studies")
        for i in shown_page(len(scored)):
            render_study(scored[i], threshold, op_name, alpha, predictor, key=f"upload_{i}")

with example_tab:
    example = example_picker()
    if example is not None:
        render_study(score_film(predictor, example.film), threshold, op_name, alpha, predictor, key="example",
                     true_label=example.truth, title=example.title, truth_source=example.truth_source)

with pacs_tab:
    st.caption("Studies from the PACS named in the server's settings (never an address typed here); films are "
               "named by a short hash, never by patient identifiers or UIDs.")
    from_pacs = pacs_source(predictor, key="pacs", threshold=threshold)  # the labels stored back follow it
    current = {(name, id(item)) for name, item in zip(film_names(from_pacs), from_pacs)}
    shown = {k: v for k, v in st.session_state.get("pacs_display", {}).items() if k in current}
    st.session_state["pacs_display"] = shown  # display copies encoded once per film of the current results
    for i, (name, item) in enumerate(zip(film_names(from_pacs), from_pacs)):
        if (name, id(item)) not in shown:
            # a copy named for the page (predictions are immutable); its film and heatmap are display-sized
            pred = replace(item.prediction, file=name, notes=[hide_uids(note) for note in item.prediction.notes],
                           error=item.prediction.error and hide_uids(item.prediction.error))
            shown[(name, id(item))] = scored_film(pred)
        render_study(shown[(name, id(item))], threshold, op_name, alpha, predictor, key=f"pacs_{i}", title=name)
    show_audit_trail()  # radiologists and the local user only

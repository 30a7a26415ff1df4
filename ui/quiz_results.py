"""What a reader sees after finishing (their chart, figures and per-film review with Grad-CAM), and
the teacher's class view. Figures come from :mod:`pneumo_core.quiz.reader_study`; nothing is recomputed here.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import streamlit as st

from pneumo_core.config import DEFAULT_VARIANT
from pneumo_core.evaluation.reports import display_name
from pneumo_core.quiz.reader_study import (
    answered,
    class_summary,
    hardest_films,
    model_on_films,
    reader_chart,
    reader_table,
)
from pneumo_core.quiz.report import results_csv
from pneumo_core.quiz.rules import QuizResults
from pneumo_core.review.examples import is_bundled, score_column
from ui import cache
from ui.chrome import plot
from ui.quiz_charts import class_figure, reader_figure
from ui.viewer import DISPLAY_SIDE

HEATMAP_CAPTION = ("Grad-CAM shows which regions pushed the model's score up: what drove the score, **not** an "
                   "outline of a lesion. It is coarse (a 7x7 grid upsampled) and scaled to each film, so a NORMAL "
                   "film shows bright areas too.")


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def films_text(results: QuizResults) -> str:
    """Which films a figure is about, in words."""
    where = ("the bundled teaching set (official Kermany test split)" if is_bundled(results.source)
             else f"the test split in {results.source}")
    return f"quiz {results.code}: {results.n_films} films from {where}"


# ---------------------------------------------------------------------------- Grad-CAM on demand
@st.cache_data(show_spinner=False, max_entries=64)
def gradcam_view(variant: str, path: str, mtime_ns: int) -> dict:
    """The shipped model's score and Grad-CAM overlay of one film at the dashboard's display size (cached
    per server), or an error line."""
    from pneumo_core.inference.gradcam import overlay

    model_file = cache.model_file(variant)
    if not model_file.is_file():
        return {"error": f"the model file {model_file.name} is not on this server, so no Grad-CAM can be drawn"}
    try:
        predictor = cache.load_predictor(variant, model_file.stat().st_mtime_ns, str(model_file))
        pred = predictor.predict(path, explain=True, display_size=DISPLAY_SIDE)
    except Exception as exc:  # a damaged model file must not crash the review
        return {"error": f"could not run {model_file.name} ({type(exc).__name__})"}
    if pred.error or pred.heatmap is None:
        return {"error": f"no Grad-CAM for this film: {pred.error or 'no heatmap'}"}
    film = pred.film.pixels  # already at the display size, the heatmap at its shape
    return {"p": float(pred.p_pneumonia), "image": film, "overlay": overlay(film, pred.heatmap, 0.4)}


# ---------------------------------------------------------------------------- the reader
def review_rows(results: QuizResults, variant: str = DEFAULT_VARIANT) -> pd.DataFrame:
    """One row per film of the quiz: truth, the reader's answer (blank when unanswered), the model's
    saved score and its label at the quiz threshold."""
    threshold = results.thresholds.get(variant)
    given = answered(results.films, results.answers, threshold, variant).set_index("position")
    rows = []
    for film in results.films.itertuples():
        mine = given.loc[film.position] if film.position in given.index else None
        p = getattr(film, score_column(variant))
        model_label = None if threshold is None or p is None or math.isnan(p) else (
            "PNEUMONIA" if p >= threshold else "NORMAL")
        rows.append({"film": film.position, "truth": film.truth, "subtype": film.subtype,
                     "your answer": None if mine is None else mine["answer"],
                     "confidence": None if mine is None else int(mine["confidence"]),
                     "correct": None if mine is None else bool(mine["correct"]),
                     "model P(pneumonia)": p, "model label": model_label})
    return pd.DataFrame(rows)


def show_reader_results(results: QuizResults, variant: str = DEFAULT_VARIANT) -> None:
    """The reader's chart, their figures, agreement with the model, and a per-film review."""
    threshold = results.thresholds.get(variant)
    chart = reader_chart(results.films, results.answers, threshold, variant)
    stats = chart["stats"]
    st.subheader("Your result")
    cols = st.columns(5)
    cols[0].metric("Films answered", f"{stats['answered']} of {results.n_films}")
    cols[1].metric("Sensitivity", _num(stats["sensitivity"]), help="Share of PNEUMONIA films you called PNEUMONIA")
    cols[2].metric("Specificity", _num(stats["specificity"]), help="Share of NORMAL films you called NORMAL")
    cols[3].metric("Your AUC", _num(stats["auc"]), help="From your answers and confidence ratings (10 levels)")
    cols[4].metric("Kappa with the model", _num(stats["kappa"]),
                   help=f"Cohen's kappa: agreement of your labels with the {display_name(variant)}'s at threshold "
                        f"{_num(threshold)}, beyond chance (1 = always agree, 0 = chance level)")
    plot(reader_figure(chart, variant, threshold, films_text(results)), key="quiz_result_chart", width="content")
    st.caption(f"Model: {display_name(variant)}, threshold {_num(threshold)} (validation-chosen). Films: "
               f"{films_text(results)}; you answered {stats['answered']}. Your curve ranks your answers from "
               "'PNEUMONIA, sure' to 'NORMAL, sure'; the star is your yes/no reading. Scores are the model's saved "
               "test-split scores. A teaching exercise, not a measure of clinical skill.")
    st.subheader("Film by film")
    rows = review_rows(results, variant)
    st.dataframe(rows, hide_index=True, width="stretch", key="quiz_review_table",
                 column_config={"model P(pneumonia)": st.column_config.NumberColumn(format="%.3f")})
    st.caption(f"Model P(pneumonia): the {display_name(variant)}'s saved score on each film; model label at its "
               f"threshold {_num(threshold)}. Films: {films_text(results)}.")
    choices = list(rows["film"])
    pick = st.selectbox("Look at a film again", choices, key="quiz_review_pick",
                        format_func=lambda k: f"Film {k}: truth {rows.loc[rows['film'] == k, 'truth'].iloc[0]}")
    path = Path(results.films.loc[results.films["position"] == pick, "path"].iloc[0])
    if not path.is_file():
        st.error(f"Film {pick} is not on this server any more.", icon=":material/broken_image:")
        return
    if st.toggle(f"Show the {display_name(variant)}'s Grad-CAM (loads the model once per server)",
                 key="quiz_review_gradcam"):
        with st.spinner("Running the model on this film..."):
            view = gradcam_view(variant, str(path), path.stat().st_mtime_ns)
        if "error" in view:
            st.error(view["error"].capitalize(), icon=":material/error:")
            return
        left, right = st.columns(2)
        left.image(view["image"], caption=f"Film {pick}", width="stretch")
        right.image(view["overlay"], width="stretch",
                    caption=f"Grad-CAM, {display_name(variant)}: P(pneumonia) {view['p']:.3f}, threshold "
                            f"{_num(threshold)}")
        st.caption(HEATMAP_CAPTION)
    else:
        st.image(str(path), caption=f"Film {pick}", width=420)


# ---------------------------------------------------------------------------- the teacher
def show_class_view(results: QuizResults, variant: str = DEFAULT_VARIANT) -> None:
    """Every reader on the model's ROC curve, the class mean and spread, the hardest films, CSV export."""
    threshold = results.thresholds.get(variant)
    table = reader_table(results.films, results.answers, threshold, variant, nicknames=results.readers["nickname"])
    summary = class_summary(table)
    model = model_on_films(results.films, threshold, variant)
    finished = int(results.readers["finished"].sum()) if len(results.readers) else 0
    reveal = ("readers see the truth when you close it" if results.reveal == "on_close"
              else "each reader sees the truth on finishing")
    st.markdown(f"**{len(results.readers)} readers** joined, {finished} finished; quiz "
                f"{'closed' if results.closed else 'open'}; {reveal}.")
    plot(class_figure(model, table, summary, variant, threshold, films_text(results)), key="quiz_class_chart",
         width="content")
    st.caption(f"Model: {display_name(variant)} at threshold {_num(threshold)} (validation-chosen), saved test-split "
               f"scores. Films: {films_text(results)}. Each cross, labelled with the reader's nickname, is their "
               "sensitivity and specificity on the films they answered.")
    shown = table.merge(results.readers[["nickname", "finished"]], on="nickname", how="left")
    shown = shown[["nickname", "answered", "finished", "correct", "sensitivity", "specificity", "auc", "kappa"]]
    # st.dataframe, not st.table: st.table renders cells as Markdown, and even escaped punctuation (ui.text.literal)
    # leaves a bare URL in a nickname a live link (GFM autolinks); a dataframe cell is always plain text.
    st.subheader("Readers")
    st.dataframe(shown.assign(**{c: shown[c].map(_num) for c in ("sensitivity", "specificity", "auc", "kappa")}),
                 hide_index=True, width="stretch", key="quiz_readers_table")
    st.subheader("Class mean and spread")
    st.table(pd.DataFrame([{"figure": col, "readers": summary[col]["n"], "mean": _num(summary[col]["mean"]),
                            "SD": _num(summary[col]["sd"]), "min": _num(summary[col]["min"]),
                            "max": _num(summary[col]["max"])}
                           for col in ("sensitivity", "specificity", "auc", "kappa")]))
    st.subheader("Films most readers got wrong")
    hard = hardest_films(results.films, results.answers, variant=variant)
    if hard.empty:
        st.info("No film was answered wrongly yet.", icon=":material/check_circle:")
    else:
        formats = {"share_wrong": st.column_config.NumberColumn(format="%.2f"),
                   "model P(pneumonia)": st.column_config.NumberColumn(format="%.3f")}
        st.dataframe(hard.rename(columns={"position": "film", "p_model": "model P(pneumonia)"}), hide_index=True,
                     width="stretch", column_config=formats)
    st.download_button("Download every answer (CSV)", data=results_csv(results, variant),
                       file_name=f"quiz_{results.code}_answers.csv", mime="text/csv", icon=":material/download:",
                       key="quiz_csv", on_click="ignore",
                       help="One row per answer: reader, film, truth, answer, confidence, the model's score and the "
                            "reader's figures")

"""One film's result on the Analyse page (images, label, score, confidence cue, report), the
review table of a study, and the pages of a long study.

A film is scored once per browser session (bounded), by the predictor alone: it decodes the upload
(or words why it cannot) and returns the result at the dashboard's display size (``ui.viewer.DISPLAY_SIDE``),
film and heatmap already matching; this module never decodes, shrinks or changes a prediction. Its
display image is encoded to JPEG once, and the overlay once per opacity, so moving the threshold or the
opacity re-runs neither the model nor the encoders. The report PNG is built only when its download is
clicked.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from pneumo_core.evaluation import reports
from pneumo_core.review import decisions as review
from pneumo_core.review.csv_export import safe_csv
from pneumo_core.site.calibration import CALIBRATION_FILE, ECE_BINS, Calibration, load_calibration
from ui.cache import BUSY, BoundedPredictor
from ui.reads import read_widget
from ui.text import literal
from ui.uploads import Film
from ui.viewer import DISPLAY_SIDE, encode_jpeg, show_film

LABEL_HEADING = "Label at this threshold:"
HEATMAP_CAPTION = ("The heatmap (Grad-CAM) shows which regions pushed the model's score up: what drove the "
                   "score, **not** an outline of a lesion. It is coarse (a 7x7 grid upsampled) and can light up "
                   "tubes, text markers or the image edge. Its colours are scaled to each image (yellow = the "
                   "strongest push in *this* image, dark purple = the weakest), so a film scored NORMAL shows "
                   "yellow too: brightness is not evidence of disease.")
SCORED_KEY = "_predictions"
CACHE_SIZE = 48  # films kept scored per browser session (768 px film, float16 heatmap, JPEGs: ~2 MB each)
OVERLAYS_KEPT = 4  # overlay JPEGs kept per film (one per opacity recently shown)
STUDIES_PER_PAGE = 6


@dataclass
class ScoredFilm:
    """A film's prediction (its display copy ``pred.film`` and heatmap, at DISPLAY_SIDE) with its display JPEGs."""

    pred: object  # pneumo_core.inference.prediction.Prediction (immutable)
    image_jpeg: bytes | None = None
    overlays: OrderedDict = field(default_factory=OrderedDict)  # opacity -> overlay JPEG
    content_sha256: str | None = None  # SHA-256 of the file's bytes (None for a PACS film: ui.reads hashes pixels)


def scored_film(pred) -> ScoredFilm:
    """A prediction (here or elsewhere, e.g. a film from the PACS, scored at DISPLAY_SIDE) as a
    :class:`ScoredFilm`: its display copy encoded once."""
    return ScoredFilm(pred, encode_jpeg(pred.film.pixels) if pred.film is not None else None)


def colour_scale_png() -> bytes:
    """The heatmap's colour scale as a PNG, made once per process."""
    import io

    from PIL import Image

    from pneumo_core.inference.gradcam import colour_scale

    buf = io.BytesIO()
    Image.fromarray(colour_scale(256, thickness=14)).save(buf, "PNG")
    return buf.getvalue()


@st.cache_resource(show_spinner=False, max_entries=4)  # read only: shared, not copied per rerun
def _calibration_cached(report_dir: str, mtime_ns: int) -> tuple[Calibration | None, str | None]:
    try:
        calibration = load_calibration(Path(report_dir))
        if not (math.isfinite(float(calibration.slope)) and math.isfinite(float(calibration.bias))):
            raise ValueError("slope and bias must be finite numbers")
        return calibration, None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"its {CALIBRATION_FILE} cannot be read ({type(exc).__name__})"


def model_calibration(report_dir) -> tuple[Calibration | None, str | None]:
    """The model's calibration (``calibration.json`` in its reports folder, fitted on validation), read once per file
    version; or None and why there is none."""
    path = Path(report_dir) / CALIBRATION_FILE if report_dir is not None else None
    if path is None or not path.is_file():
        return None, f"the model has no {CALIBRATION_FILE} (`pneumo site calibrate` writes it)"
    return _calibration_cached(str(report_dir), path.stat().st_mtime_ns)


def calibration_split(calibration: Calibration, split: str) -> dict | None:
    """The figures the calibration file holds for ``split`` ("validation", "test"), or None (the test entry's name
    also says it is reported only)."""
    return next((f for name, f in calibration.figures.items() if name.split(" ", 1)[0] == split), None)


def calibration_help(calibration: Calibration) -> str:
    """What the calibrated probability is, with the ECE figures of its own file."""
    val, test = calibration_split(calibration, "validation"), calibration_split(calibration, "test")
    text = (f"The score through a logistic calibration (temperature {calibration.temperature:.2f}, prior offset "
            f"{calibration.bias:+.2f}) fitted on the patient-grouped validation split ({calibration.n} films, "
            f"{calibration.prevalence:.0%} pneumonia)")
    if val is not None:
        text += (f"; expected calibration error (ECE) there {val['ece_raw']:.3f} raw, "
                 f"{val['ece_calibrated']:.3f} calibrated")
    text += "."
    if test is not None:
        worse = val is not None and test["ece_calibrated"] > val["ece_calibrated"]
        text += (f" On the later test batch ({test['n']} films, reported only, never fitted on) it was "
                 f"{'worse ' if worse else ''}calibrated: ECE {test['ece_calibrated']:.3f} (raw score "
                 f"{test['ece_raw']:.3f}).")
    return text + (" So at a new site it is not a risk estimate until recalibrated from the site's own reads "
                   "(the Your site page).")


def calibration_caption(rep, calibration: Calibration) -> str:
    """The ECE of the raw and the calibrated score on each set of a model's calibration file, and where it is from."""
    parts = []
    for name, figures in calibration.figures.items():
        split = name.split(" ", 1)[0]
        what = {"validation": "fitted here", "test": "reported only, never fitted on"}.get(split, name)
        parts.append(f"{split} {figures['ece_raw']:.3f} raw, {figures['ece_calibrated']:.3f} calibrated "
                     f"({figures['n']} films, {what})")
    return (f"ECE ({ECE_BINS} equal-width bins), {rep.name}: " + "; ".join(parts) + f". From reports/"
            f"{Path(rep.report_dir).name}/{CALIBRATION_FILE}. Points below the diagonal: the score overstates the "
            "pneumonia rate.")


def _store_key(predictor, film: Film) -> tuple:
    return predictor.name, predictor.sha256, film.name, film.sha256


def is_scored(predictor, film: Film) -> bool:
    """True when ``film`` was already scored by ``predictor`` in this browser session."""
    return _store_key(predictor, film) in st.session_state.get(SCORED_KEY, {})


def score_film(predictor, film: Film) -> ScoredFilm:
    """Score one film with Grad-CAM; never raises. Kept in this browser session only (bounded),
    so moving a slider does not re-run the model."""
    from pneumo_core.inference.prediction import Prediction

    store = st.session_state.setdefault(SCORED_KEY, OrderedDict())
    key = _store_key(predictor, film)
    if key in store:
        store.move_to_end(key)
        return store[key]
    try:  # one decode, in the predictor: a refused file comes back with its reason in pred.error
        pred = BoundedPredictor(predictor).predict(film.data, name=film.name, explain=True, display_size=DISPLAY_SIDE)
    except Exception as exc:  # the core never raises for bad input; this is the last line of defence
        pred = Prediction(file=film.name, model=predictor.name, threshold=predictor.threshold,
                          error=f"could not process this file ({type(exc).__name__})")
    scored = scored_film(pred)
    scored.content_sha256 = film.sha256
    if pred.error == BUSY:
        return scored  # not kept: the next rerun tries again
    store[key] = scored
    while len(store) > CACHE_SIZE:
        store.popitem(last=False)
    return scored


def overlay_jpeg(scored: ScoredFilm, alpha: float) -> bytes:
    """The Grad-CAM overlay at opacity ``alpha`` as JPEG, encoded once per opacity."""
    from pneumo_core.inference.gradcam import overlay

    alpha = round(float(alpha), 3)
    if alpha not in scored.overlays:
        scored.overlays[alpha] = encode_jpeg(overlay(scored.pred.film.pixels, scored.pred.heatmap, alpha=alpha))
        while len(scored.overlays) > OVERLAYS_KEPT:
            scored.overlays.popitem(last=False)
    return scored.overlays[alpha]


def study_report_bytes(pred, threshold: float, op_name: str, alpha: float, predictor) -> bytes:
    """The one-PNG report of a study (built when its download is clicked)."""
    from pneumo_core.review.report_image import study_report_png

    d = review.decision(pred, threshold)
    conf = d["confidence"]
    return study_report_png(pred.image, pred.heatmap, file_name=pred.file, p_pneumonia=d["p"], label=d["label"],
                            threshold=threshold, model_name=reports.display_name(predictor.name),
                            model_sha256=predictor.sha256, operating_point=op_name, alpha=alpha,
                            confidence=f"{conf['level']} ({conf['text']})", notes=pred.notes)


def _render_refused(scored: ScoredFilm, name: str) -> None:
    pred = scored.pred
    if pred.error == BUSY:
        st.warning(f"**{literal(name)}**: {BUSY}.", icon=":material/hourglass_empty:")
    elif pred.is_chest_xray is False:
        st.error(f"**{literal(name)}** {literal(pred.error)}.", icon=":material/error:")
        if scored.image_jpeg is not None:
            st.image(scored.image_jpeg, caption="The image as decoded (not scored)", width=240, output_format="JPEG")
    else:
        st.error(f"**{literal(name)}**: could not use this file: {literal(pred.error)}", icon=":material/error:")


def render_study(scored: ScoredFilm, threshold: float, op_name: str, alpha: float, predictor, key: str,
                 true_label: str | None = None, title: str | None = None, truth_source: str = "") -> None:
    """One study: original and Grad-CAM overlay side by side, label, P(pneumonia), confidence cue,
    report download; or a clear message for this file only. ``title`` replaces the file name
    as the heading (teaching examples, whose file names give the answer away)."""
    pred = scored.pred
    model_name = reports.display_name(predictor.name)
    with st.container(border=True):
        st.markdown(f"#### {literal(title or pred.file)}")
        if pred.error:
            _render_refused(scored, title or pred.file)  # an example's file name would give its class away
            return
        d = review.decision(pred, threshold)
        conf = d["confidence"]
        original, heat, verdict = st.columns([1, 1, 1.1], gap="medium")
        original.image(scored.image_jpeg, caption="Original (as decoded; display copy)", width="stretch",
                       output_format="JPEG")
        try:
            heat.image(overlay_jpeg(scored, alpha), width="stretch", output_format="JPEG",
                       caption=f"Grad-CAM overlay, opacity {alpha:.2f} ({model_name})")
            heat.image(colour_scale_png(), width="stretch", output_format="PNG",
                       caption="Heatmap scale for this image: weakest push (left) to strongest (right)")
        except Exception as exc:
            heat.warning(f"Heatmap unavailable ({type(exc).__name__}).")
        with verdict:
            # A heading, not st.metric: a metric cuts "PNEUMONIA" to "PNEUM..." in a narrow column.
            st.markdown(f"{LABEL_HEADING}\n#### {d['label']}", help=f"PNEUMONIA when P(pneumonia) >= {threshold:.3f}.")
            calibration, why_not = model_calibration(predictor.report_dir)
            # the calibrated label must not contain "P(pneumonia)": the browser tests find the raw score by it
            raw, calibrated = st.columns(2) if calibration is not None else (st.container(), None)
            raw.metric("P(pneumonia)", f"{d['p']:.3f}", help="The model's score (0-1); not a calibrated risk.")
            if calibrated is not None:
                calibrated.metric("Calibrated probability", f"{float(calibration.apply(d['p'])):.3f}",
                                  help=calibration_help(calibration))
                st.caption(f"Calibrated for films like the validation films ({calibration.prevalence:.0%} "
                           "pneumonia); the label comes from the raw score and the threshold.")
            else:
                st.caption(f"No calibrated probability: {why_not}.")
            st.caption(f"Threshold {threshold:.3f}, operating point: {op_name}; model: {model_name}")
            st.markdown(f"Confidence cue: **{conf['level']}**, {conf['text']} (distance from the threshold "
                        f"{conf['distance']:+.3f}).")
            if pred.notes:
                st.caption("Image handling: " + literal("; ".join(pred.notes)))
            if true_label is not None:
                matches = "matches" if true_label == d["label"] else "does NOT match"
                st.info(f"True label ({truth_source or 'dataset folder'}): **{true_label}**; the model's label "
                        f"{matches}. File: {literal(pred.file)}.", icon=":material/school:")
            st.download_button("Report (PNG)", help="This study's images, label, score, threshold and model in one PNG",
                               data=lambda: study_report_bytes(pred, threshold, op_name, alpha, predictor),
                               file_name=f"{review.safe_file_stem(pred.file)}_report.png", mime="image/png",
                               key=f"dl_{key}", on_click="ignore", icon=":material/download:")
        st.caption(HEATMAP_CAPTION)
        read_widget(scored, predictor, threshold, key=key)  # the reader's own read, saved for the site's figures
        # drawn only on request: a zoomable viewer per study would put an image encode on every rerun
        if st.toggle("Open in the viewer: zoom and pan, heatmap on/off and opacity"
                     + (", window/level" if pred.film.raw is not None else ""), key=f"viewer_{key}"):
            show_film(pred.film, pred.heatmap, key=f"film_{key}", title=title or pred.file)


def render_review_table(preds: list, threshold: float, op_name: str, predictor) -> None:
    """The study's review table (one row per film) and its CSV download, built on click."""
    df = review.review_rows(preds, threshold, op_name, predictor.sha256, model_calibration(predictor.report_dir)[0])
    st.subheader("Review table")
    st.caption(f"{len(df)} files; model {reports.display_name(predictor.name)}; threshold {threshold:.3f}, "
               f"operating point: {op_name}.")
    # The explanation columns come before "confidence": on a narrow screen they stay in view.
    shown = df[["file", "label", "p_pneumonia", "p_calibrated", "flag", "error", "confidence"]].assign(
        p_pneumonia=[f"{p:.3f}" if pd.notna(p) else "-" for p in df["p_pneumonia"]],
        p_calibrated=[f"{p:.3f}" if pd.notna(p) else "-" for p in df["p_calibrated"]])
    st.dataframe(shown, hide_index=True, width="stretch",
                 column_config={"file": st.column_config.TextColumn("File", width="medium"),
                                "label": st.column_config.TextColumn("Label", width=100),
                                "p_pneumonia": st.column_config.TextColumn("P(pneumonia)", width=95),
                                "p_calibrated": st.column_config.TextColumn(
                                    "Calibrated", width=95, help="Fitted on the validation split; not a risk "
                                    "estimate at a new site until recalibrated from its reads"),
                                "flag": st.column_config.TextColumn("Flag", width="medium"),
                                "error": st.column_config.TextColumn("Why not scored", width="large"),
                                "confidence": st.column_config.TextColumn("Confidence", width=95)})
    st.caption("A file that was not scored has no label or P(pneumonia); hover a cell to read a long message.")
    st.download_button("Review table (CSV)", data=lambda: safe_csv(df).encode(),
                       file_name="review_table.csv", mime="text/csv", key="dl_review_csv", on_click="ignore",
                       icon=":material/table:", help="With the model's SHA-256, the threshold and the operating point")


def shown_page(n_studies: int, key: str = "study_page") -> range:
    """Which studies to draw: all of them up to :data:`STUDIES_PER_PAGE`, else the page picked
    (every film is scored and listed in the review table either way)."""
    if n_studies <= STUDIES_PER_PAGE:
        return range(n_studies)
    starts = list(range(0, n_studies, STUDIES_PER_PAGE))
    labels = {s: f"{s + 1}-{min(s + STUDIES_PER_PAGE, n_studies)}" for s in starts}
    if st.session_state.get(key) not in labels:
        st.session_state.pop(key, None)
    start = st.radio(f"Studies shown ({STUDIES_PER_PAGE} at a time, of {n_studies})", starts, key=key,
                     format_func=labels.get, horizontal=True)
    return range(start, min(start + STUDIES_PER_PAGE, n_studies))

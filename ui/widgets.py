"""Every Streamlit widget, cache and figure the pages share.

Pages stay thin: they lay out what these helpers return. Model and metric logic lives in
``pneumo_core``; this module only adds caching (``st.cache_resource`` for models, ``st.cache_data``
for report files), widgets, and Plotly figures. Uploaded bytes stay in memory: they are decoded,
scored and kept (bounded) in this browser session's state only; nothing is written to disk or logged.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pneumo_core import reports
from pneumo_core.config import DEFAULT_VARIANT, MODELS_DIR, SHIPPED_VARIANTS, data_dir
from pneumo_core.images import READABLE_SUFFIXES

APP_TITLE = "Pneumonia chest X-ray workbench"
DISCLAIMER = ("**Research and teaching tool, not a diagnostic device.** Its outputs are not validated for "
              "clinical use and must not guide the care of any patient.")
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in READABLE_SUFFIXES]
UPLOADER_KEY = "uploads"
UPLOADED_KEY = "_study_uploaded"  # (name, bytes) copy of the uploader's files
KEPT_KEY = "_study_kept"  # files kept from before a visit to another page, which empties the uploader
STUDY_MAX_BYTES = 64 * 2**20  # per browser session; a larger study is shown while the page is open only
CUSTOM = "custom (slider)"
LABEL_HEADING = "Label at this threshold:"
HEATMAP_CAPTION = ("The heatmap (Grad-CAM) shows which regions pushed the model's score up: what drove the "
                   "score, **not** an outline of a lesion. It is coarse (a 7x7 grid upsampled) and can light up "
                   "tubes, text markers or the image edge. Its colours are scaled to each image (yellow = the "
                   "strongest push in *this* image, dark purple = the weakest), so a film scored NORMAL shows "
                   "yellow too: brightness is not evidence of disease.")
PRESET_NAMES = {"0.5": "fixed 0.5 (no validation rule)"}  # how a preset key from training.json is shown
CACHE_SIZE = 48  # predictions kept per browser session (display image + heatmap each, a few MB)
DISPLAY_SIDE = 768  # longest side of the display copies kept for the page and the report

# Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000", "grey": "#999999"}
MODEL_COLOURS = {"finetuned": OKABE_ITO["blue"], "frozen": OKABE_ITO["orange"]}
MODEL_DASH = {"finetuned": "solid", "frozen": "dash"}  # a second cue besides colour
MODEL_SYMBOL = {"finetuned": "circle", "frozen": "diamond"}
LABEL_COLOURS = {"NORMAL": OKABE_ITO["green"], "PNEUMONIA": OKABE_ITO["vermillion"]}


# ============================================================================ page chrome
def page_setup(title: str, icon: str = ":material/radiology:") -> None:
    """Page config + the research/teaching disclaimer every page shows at the top."""
    st.set_page_config(page_title=f"{title} | {APP_TITLE}", page_icon=icon, layout="wide")
    disclaimer()


def disclaimer() -> None:
    st.warning(DISCLAIMER, icon=":material/warning:")
    st.sidebar.caption("Research and teaching use only; not a diagnostic device.")


def model_colour(variant: str) -> str:
    return MODEL_COLOURS.get(variant, OKABE_ITO["black"])


# ============================================================================ caches
@st.cache_data(show_spinner=False, max_entries=8)
def _load_reports_cached(signature: tuple) -> dict:
    return reports.load_reports(MODELS_DIR)


def get_reports() -> dict[str, reports.VariantReport]:
    """Every shipped variant's reports; reloaded automatically when a model or report file changes."""
    return _load_reports_cached(reports.files_signature(MODELS_DIR))


def available(reps: dict) -> dict:
    return {v: r for v, r in reps.items() if r.available}


def show_missing(reps: dict) -> None:
    for rep in reps.values():
        if not rep.available:
            st.info(rep.status_message(), icon=":material/hourglass_empty:")


def evaluated_reports_or_stop(empty_message: str) -> dict:
    """The evaluated variants' reports; notes the missing ones, and stops the page when none is ready."""
    reps = get_reports()
    show_missing(reps)
    ready = available(reps)
    if not ready:
        st.error(empty_message)
        st.stop()
    return ready


@st.cache_data(show_spinner=False, max_entries=8)
def file_sha256(path: str, mtime_ns: int) -> str:
    from pneumo_core.model import sha256_file

    return sha256_file(path)


@st.cache_resource(show_spinner=False, max_entries=2)
def _load_predictor(variant: str, mtime_ns: int):
    from pneumo_core.infer import Predictor

    return Predictor(variant)


def get_predictor(variant: str):
    """The shipped model ``variant``, loaded once per server process: (predictor, None) or (None, message)."""
    path = MODELS_DIR / f"{variant}.keras"
    if not path.is_file():
        return None, reports.load_report(variant, MODELS_DIR).status_message()
    try:
        with st.spinner(f"Loading the {reports.display_name(variant)} (once per server)..."):
            return _load_predictor(variant, path.stat().st_mtime_ns), None
    except Exception as exc:  # a bad model file must not crash the page
        first = (str(exc).splitlines() or [""])[0][:200]
        return None, f"Could not load {path.name}: {type(exc).__name__}: {first}"


@st.cache_data(show_spinner=False, max_entries=64)
def _confusion_cached(variant: str, threshold: float, signature: tuple) -> dict:
    return reports.confusion_at(get_reports()[variant], threshold)


def confusion(variant: str, threshold: float) -> dict:
    """Test-split metrics and confusion matrix at ``threshold`` from the saved scores (cached)."""
    return _confusion_cached(variant, float(threshold), reports.files_signature(MODELS_DIR))


@st.cache_data(show_spinner=False, max_entries=8)
def _curves_cached(variant: str, signature: tuple) -> tuple[pd.DataFrame, float, pd.DataFrame]:
    rep = get_reports()[variant]
    pr = reports.pr_curve(rep)
    return pr, pr.attrs["average_precision"], reports.calibration(rep)


def curves(variant: str) -> tuple[pd.DataFrame, float, pd.DataFrame]:
    """(precision-recall curve, average precision, calibration table) of the saved test scores (cached)."""
    return _curves_cached(variant, reports.files_signature(MODELS_DIR))


@st.cache_data(show_spinner=False, max_entries=4)
def cached_examples(root: str, per_class: int = 4) -> pd.DataFrame:
    return reports.test_examples(root, per_class)


# ============================================================================ pickers
def _seed(key: str, value) -> None:
    """Give a widget its first value through session state (so callbacks may change it later)."""
    if key not in st.session_state:
        st.session_state[key] = value


def model_picker(reps: dict, key: str = "model", container=None) -> str | None:
    """Fine-tuned (default) or frozen, among the models whose file exists; None when there is none."""
    container = container or st.sidebar
    options = [v for v in SHIPPED_VARIANTS if reps[v].model_present]
    if not options:
        container.error("No shipped model found in models/. Train one with "
                        "`python -m pneumo_core train --variant finetuned --data DIR`.")
        return None
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
        st.session_state[key] = DEFAULT_VARIANT if DEFAULT_VARIANT in options else options[0]
    choice = container.radio("Model", options, key=key, format_func=reports.display_name, persist_state="session",
                             help="The fine-tuned model is the default; the frozen one is the baseline.")
    for v in SHIPPED_VARIANTS:
        if v not in options:
            container.caption(f"{reports.display_name(v)}: not available yet (models/{v}.keras missing).")
    return choice


def operating_point_picker(rep: reports.VariantReport, container=None, show_title: bool = True) -> tuple[float, str]:
    """Preset operating points (chosen on validation data) and a threshold slider kept in sync.

    Keys are per model and persist for the session, so every page uses the same operating point.
    Returns (threshold, name of the operating point or "custom").
    """
    container = container or st.sidebar
    v = rep.variant
    ops = rep.operating_points
    pkey, tkey = f"op_{v}", f"thr_{v}"
    names = list(ops) + [CUSTOM]
    default = next((n for n, o in ops.items() if abs(o["threshold"] - rep.threshold) < 1e-9), CUSTOM)
    _seed(pkey, default)
    _seed(tkey, float(rep.threshold))

    def on_preset():
        name = st.session_state[pkey]
        if name in ops:
            st.session_state[tkey] = float(ops[name]["threshold"])

    def on_slider():
        t = st.session_state[tkey]
        current = st.session_state.get(pkey)
        if current in ops and abs(ops[current]["threshold"] - t) < 5e-4:
            return
        st.session_state[pkey] = next((n for n, o in ops.items() if abs(o["threshold"] - t) < 5e-4), CUSTOM)

    if show_title:
        container.markdown(f"**Operating point: {rep.name}**")
    container.selectbox("Preset (chosen on the validation split)", names, key=pkey, on_change=on_preset,
                        persist_state="session", format_func=lambda n: PRESET_NAMES.get(n, n),
                        help="Thresholds picked on the patient-grouped validation split, never on the test set.")
    t = container.slider("Decision threshold on P(pneumonia)", 0.0, 1.0, step=0.001, format="%.3f", key=tkey,
                         on_change=on_slider, persist_state="session",
                         help="PNEUMONIA when P(pneumonia) >= threshold.")
    name = st.session_state.get(pkey, CUSTOM)
    val = reports.validation_at(rep, t)
    if val is None and name in ops:
        val = ops[name]
    lines = []
    if val is not None:
        lines.append(f"validation (chose it): sensitivity {val['val_sensitivity']:.1%}, "
                     f"specificity {val['val_specificity']:.1%}")
    if rep.test_predictions is not None and len(rep.test_predictions):
        test = confusion(v, t)
        lines.append(f"test split ({rep.test_n} films): sensitivity {test['recall']:.1%}, "
                     f"specificity {test['specificity']:.1%}")
    if lines:
        container.caption(f"At {t:.3f}, " + "; ".join(lines) + ". The test films come from a later batch: "
                          "expect figures nearer the test ones on new films.")
    return float(t), ("custom" if name == CUSTOM else PRESET_NAMES.get(name, name))


# ============================================================================ diagnosis
def upload_label() -> str:
    from pneumo_core.images import MAX_PIXELS

    mb = st.get_option("server.maxUploadSize")  # .streamlit/config.toml
    return (f"Chest X-rays: DICOM, PNG, JPEG, TIFF, BMP or WebP; greyscale or colour, 8- or 16-bit; up to {mb} MB "
            f"and {MAX_PIXELS // 1_000_000} megapixels a file")


def remember_uploads() -> None:
    """The uploader's ``on_change``: a copy of its files, so they survive a visit to another
    page (Streamlit empties the uploader when its page is left)."""
    files = [(f.name, f.getvalue()) for f in st.session_state.get(UPLOADER_KEY) or []]
    if sum(len(data) for _, data in files) + sum(len(d) for _, d in st.session_state.get(KEPT_KEY, [])) \
            > STUDY_MAX_BYTES:
        st.session_state.pop(UPLOADED_KEY, None)
        st.session_state["_study_too_large"] = True
        return
    st.session_state.pop("_study_too_large", None)
    st.session_state[UPLOADED_KEY] = files


def forget_uploads() -> None:
    for key in (KEPT_KEY, UPLOADED_KEY, "_study_too_large"):
        st.session_state.pop(key, None)


def current_study(uploaded) -> tuple[list[tuple[str, bytes]], int]:
    """(files to show as (name, bytes), how many of them were kept from before a visit to another
    page). Kept files stay until Clear; files added or removed in the uploader come and go."""
    if not uploaded and st.session_state.get(UPLOADED_KEY):  # the uploader was emptied by leaving the page
        st.session_state[KEPT_KEY] = st.session_state.get(KEPT_KEY, []) + st.session_state.pop(UPLOADED_KEY)
    kept = st.session_state.get(KEPT_KEY, [])
    if st.session_state.get("_study_too_large"):
        st.caption(f"These files come to more than {STUDY_MAX_BYTES // 2**20} MB: they are shown while this "
                   "page is open but not kept when you visit another page.")
    current = [(f.name, f.getvalue()) for f in uploaded or []]
    return kept + [f for f in current if f not in kept], len(kept)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def analyse(predictor, name: str, data: bytes):
    """Score one file (name, bytes) with Grad-CAM; never raises. Results are kept in this browser
    session only (bounded), so moving a slider does not re-run the model."""
    from pneumo_core.infer import Prediction

    store = st.session_state.setdefault("_predictions", OrderedDict())
    key = (predictor.name, predictor.sha256, name, hashlib.sha256(data).hexdigest())
    if key in store:
        store.move_to_end(key)
        return store[key]
    try:
        pred = _shrink(predictor.predict(data, name=name, explain=True))
    except Exception as exc:  # the core never raises for bad input; this is the last line of defence
        pred = Prediction(file=name, model=predictor.name, threshold=predictor.threshold,
                          error=f"could not process this file ({type(exc).__name__})")
    store[key] = pred
    while len(store) > CACHE_SIZE:
        store.popitem(last=False)
    return pred


def _shrink(pred, max_side: int = DISPLAY_SIDE):
    """Keep only display-sized copies of the image and heatmap (the score is already computed)."""
    import cv2

    if pred.image is not None and max(pred.image.shape[:2]) > max_side:
        h, w = pred.image.shape[:2]
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        pred.image = cv2.resize(pred.image, size, interpolation=cv2.INTER_AREA)
        if pred.heatmap is not None:
            pred.heatmap = cv2.resize(pred.heatmap, size, interpolation=cv2.INTER_AREA)
    if pred.heatmap is not None:  # drawn as 256 colours anyway: half the memory per kept study
        pred.heatmap = pred.heatmap.astype(np.float16)
    return pred


def decision(pred, threshold: float) -> dict:
    """Label and confidence cue at the chosen threshold (the score itself does not change)."""
    if pred.error or pred.p_pneumonia is None:
        return {"label": None, "p": None, "confidence": None}
    return {"label": reports.label_at(pred.p_pneumonia, threshold), "p": float(pred.p_pneumonia),
            "confidence": reports.confidence(pred.p_pneumonia, threshold)}


def flag_for(pred, threshold: float) -> str:
    if pred.error:
        return "not a chest X-ray" if pred.is_chest_xray is False else "unreadable file"
    conf = reports.confidence(pred.p_pneumonia, threshold)
    flags = ["near threshold: review"] if conf["level"] == "low" else []
    flags += list(pred.notes)
    return "; ".join(flags) or "ok"


def study_report_bytes(pred, threshold: float, op_name: str, alpha: float, predictor) -> bytes:
    from pneumo_core.report_image import study_report_png

    d = decision(pred, threshold)
    conf = d["confidence"]
    return study_report_png(pred.image, pred.heatmap, file_name=pred.file, p_pneumonia=d["p"], label=d["label"],
                            threshold=threshold, model_name=reports.display_name(predictor.name),
                            model_sha256=predictor.sha256, operating_point=op_name, alpha=alpha,
                            confidence=f"{conf['level']} ({conf['text']})", notes=pred.notes)


def _safe_name(name: str) -> str:
    stem = Path(name).stem or "study"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]


def render_study(pred, threshold: float, op_name: str, alpha: float, predictor, key: str,
                 true_label: str | None = None, title: str | None = None) -> None:
    """One study: original and Grad-CAM overlay side by side, label, P(pneumonia), confidence cue,
    report download; or a clear message for this file only. ``title`` replaces the file name
    as the heading (teaching examples, whose file names give the answer away)."""
    from pneumo_core.explain import colour_scale, overlay

    with st.container(border=True):
        st.markdown(f"#### {title or pred.file}")
        if pred.error:
            name = title or pred.file  # an example's file name would give its class away
            if pred.is_chest_xray is False:
                st.error(f"**{name}** {pred.error}.", icon=":material/error:")
                if pred.image is not None:
                    st.image(pred.image, caption="The image as decoded (not scored)", width=240)
            else:
                st.error(f"**{name}**: could not use this file: {pred.error}", icon=":material/error:")
            return
        d = decision(pred, threshold)
        conf = d["confidence"]
        c1, c2, c3 = st.columns([1, 1, 1.1], gap="medium")
        c1.image(pred.image, caption="Original (as decoded; display copy)", width="stretch")
        try:
            c2.image(overlay(pred.image, pred.heatmap, alpha=alpha), width="stretch",
                     caption=f"Grad-CAM overlay, opacity {alpha:.2f} ({reports.display_name(predictor.name)})")
            c2.image(colour_scale(256, thickness=14), width="stretch",
                     caption="Heatmap scale for this image: weakest push (left) to strongest (right)")
        except Exception as exc:
            c2.warning(f"Heatmap unavailable ({type(exc).__name__}).")
        with c3:
            # A heading, not st.metric: a metric cuts "PNEUMONIA" to "PNEUM..." in a narrow column.
            st.markdown(f"{LABEL_HEADING}\n#### {d['label']}", help=f"PNEUMONIA when P(pneumonia) >= {threshold:.3f}.")
            st.metric("P(pneumonia)", f"{d['p']:.3f}", help="The model's score (0-1); not a calibrated risk.")
            st.caption(f"Threshold {threshold:.3f}, operating point: {op_name}; "
                       f"model: {reports.display_name(predictor.name)}")
            st.markdown(f"Confidence cue: **{conf['level']}**, {conf['text']} (distance from the threshold "
                        f"{conf['distance']:+.3f}).")
            if pred.notes:
                st.caption("Image handling: " + "; ".join(pred.notes))
            if true_label is not None:
                verdict = "matches" if true_label == d["label"] else "does NOT match"
                st.info(f"True label (dataset folder): **{true_label}**; the model's label {verdict}. "
                        f"File: {pred.file}.", icon=":material/school:")
            st.download_button("Report (PNG)", help="This study's images, label, score, threshold and model in one PNG",
                               data=lambda: study_report_bytes(pred, threshold, op_name, alpha, predictor),
                               file_name=f"{_safe_name(pred.file)}_report.png", mime="image/png",
                               key=f"dl_{key}", on_click="ignore", icon=":material/download:")
        st.caption(HEATMAP_CAPTION)


def review_table(preds: list, threshold: float, op_name: str = "", model_sha256: str | None = None) -> pd.DataFrame:
    """One row per file; the provenance columns (model, its SHA-256, threshold, operating point,
    disclaimer) travel with the CSV download, where no page caption can."""
    rows = []
    for pred in preds:
        d = decision(pred, threshold)
        rows.append({"file": pred.file, "label": d["label"] or "",
                     "p_pneumonia": round(d["p"], 4) if d["p"] is not None else None,
                     "confidence": d["confidence"]["level"] if d["confidence"] else "",
                     "flag": flag_for(pred, threshold),
                     "error": pred.error or "", "model": pred.model, "model_sha256": model_sha256 or "",
                     "threshold": round(threshold, 4), "operating_point": op_name,
                     "use": "research and teaching only; not a diagnostic device"})
    return pd.DataFrame(rows)


def render_review_table(preds: list, threshold: float, op_name: str, predictor) -> None:
    df = review_table(preds, threshold, op_name, predictor.sha256)
    st.subheader("Review table")
    st.caption(f"{len(df)} files; model {reports.display_name(predictor.name)}; threshold {threshold:.3f}, "
               f"operating point: {op_name}.")
    # The explanation columns come before "confidence": on a narrow screen they stay in view.
    shown = df[["file", "label", "p_pneumonia", "flag", "error", "confidence"]].assign(
        p_pneumonia=[f"{p:.3f}" if pd.notna(p) else "-" for p in df["p_pneumonia"]])
    st.dataframe(shown, hide_index=True, width="stretch",
                 column_config={"file": st.column_config.TextColumn("File", width="medium"),
                                "label": st.column_config.TextColumn("Label", width=100),
                                "p_pneumonia": st.column_config.TextColumn("P(pneumonia)", width=95),
                                "flag": st.column_config.TextColumn("Flag", width="medium"),
                                "error": st.column_config.TextColumn("Why not scored", width="large"),
                                "confidence": st.column_config.TextColumn("Confidence", width=95)})
    st.caption("A file that was not scored has no label or P(pneumonia); hover a cell to read a long message.")
    st.download_button("Review table (CSV)", data=df.to_csv(index=False).encode(),
                       file_name="review_table.csv", mime="text/csv", key="dl_review_csv", on_click="ignore",
                       icon=":material/table:", help="With the model's SHA-256, the threshold and the operating point")


def example_picker(key: str = "example"):
    """Teaching demo: pick a test-split image (when the dataset folder exists).
    Returns (example name, file name, bytes, true label) or None."""
    root = data_dir()
    if not (root / "test").is_dir():
        st.caption(f"No dataset folder at {root} (set PNEUMO_DATA_DIR); the repository ships no patient images.")
        return None
    ex = cached_examples(str(root))
    if ex.empty:
        st.caption("The dataset's test folder has no JPEG images.")
        return None
    labels = {r.path: r.example for r in ex.itertuples()}  # numbered: file names give the class away
    choice = st.selectbox("Example from the official test split (file name and true label shown after the "
                          "prediction)", list(labels), format_func=labels.get, key=f"{key}_choice")
    if st.button("Run this example", key=f"{key}_run", icon=":material/play_arrow:"):
        st.session_state[f"{key}_active"] = choice
    active = st.session_state.get(f"{key}_active")
    if active != choice:  # nothing run yet, or another example picked: never show one under another's name
        st.caption("Press the button to score the chosen example; its true label appears after the model's.")
        return None
    row = ex.loc[ex["path"] == active]
    try:
        data = Path(active).read_bytes()
    except OSError as exc:
        st.error(f"Cannot read {Path(active).name}: {exc.strerror}")
        return None
    if row.empty:
        return None
    return row["example"].iloc[0], Path(active).name, data, row["true_label"].iloc[0]


# ============================================================================ figures
SUBTITLE_CHARS = 42  # Plotly does not wrap titles: lines this short fit a half-width chart on a 1024 px screen


def _title(text: str, *subs: str) -> dict:
    """A chart title with its provenance (data, model, threshold) underneath, wrapped by hand so
    it stays readable on a projector; ``margin_top`` is the room it needs."""
    import textwrap

    lines = [ln for sub in subs for part in sub.split("<br>") for ln in textwrap.wrap(part, SUBTITLE_CHARS)]
    text = "<br>".join([text] + [f"<sup>{ln}</sup>" for ln in lines])
    # Pinned to the top of the chart, with room for every line: a title centred in the margin ran
    # into the plot below it.
    return {"text": text, "x": 0.0, "xanchor": "left", "y": 1.0, "yref": "container", "yanchor": "top",
            "pad": {"t": 18}, "margin_top": 58 + 24 * len(lines)}


def _apply_title(fig: go.Figure, title: dict, **layout) -> None:
    margin = {**layout.pop("margin", {}), "t": title.pop("margin_top")}
    fig.update_layout(title=title, margin=margin, **layout)


def _markers_line(points: dict) -> str:
    """Which threshold each model's marker shows (``points``: variant -> (threshold, metrics))."""
    return "markers = current thresholds: " + ", ".join(f"{reports.short_name(v)} {t:.3f}"
                                                        for v, (t, _) in points.items())


def metrics_bar_figure(table: pd.DataFrame, basis: str, data_caption: str) -> go.Figure:
    fig = go.Figure()
    for v, g in table.groupby("variant", sort=False):
        t = g["threshold"].iloc[0]
        fig.add_bar(x=[reports.METRIC_SHORT[m] for m in g["metric"]], y=g["value"],
                    name=f"{reports.short_name(v)} at {t:.3f}", marker_color=model_colour(v),
                    marker_pattern={"shape": "" if v == "finetuned" else "/", "fillmode": "overlay",
                                    "fgcolor": "white", "solidity": 0.25},
                    customdata=np.stack([g["ci_lo"], g["ci_hi"]], axis=1),
                    error_y={"type": "data", "symmetric": False, "array": g["ci_hi"] - g["value"],
                             "arrayminus": g["value"] - g["ci_lo"], "color": "#222", "thickness": 1.5},
                    hovertemplate="%{x}: %{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                                  "<extra>%{fullData.name}</extra>")
    _apply_title(fig, _title("Test metrics, 95% CIs", data_caption, basis), barmode="group",
                 yaxis={"title": "Value (0-1)", "range": [0, 1.05]}, xaxis={"title": "Metric"},
                 legend={"orientation": "h", "y": -0.22, "x": 0}, margin={"l": 60, "r": 10}, height=500)
    return fig


def history_figure(rep: reports.VariantReport) -> go.Figure:
    h = rep.history
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss (binary cross-entropy)", "ROC AUC"))
    c = model_colour(rep.variant)
    for col, metric in ((1, "loss"), (2, "auc")):
        fig.add_scatter(x=h["step"], y=h[metric], mode="lines+markers", name="training", line={"color": c},
                        marker={"size": 4}, legendgroup="train", showlegend=col == 1, row=1, col=col)
        fig.add_scatter(x=h["step"], y=h[f"val_{metric}"], mode="lines+markers", name="validation",
                        line={"color": OKABE_ITO["black"], "dash": "dot"}, marker={"size": 4, "symbol": "square"},
                        legendgroup="val", showlegend=col == 1, row=1, col=col)
        fig.update_xaxes(title_text="Epoch (head, then fine-tune)" if (h["phase"] == "fine-tune").any()
                         else "Epoch (head training)", row=1, col=col)
    fig.update_yaxes(title_text="Loss", row=1, col=1)
    fig.update_yaxes(title_text="AUC", row=1, col=2)
    ft = h.loc[h["phase"] == "fine-tune", "step"]
    if len(ft):
        fig.add_vline(x=float(ft.iloc[0]) - 0.5, line_dash="dash", line_color=OKABE_ITO["grey"],
                      annotation_text="fine-tuning starts", annotation_position="top left")
    d = rep.training.get("data", {})
    sub = (f"training {d.get('train_images', '?')} / validation {d.get('val_images', '?')} images "
           "(Kermany train folder, patient-grouped split)")
    _apply_title(fig, _title(f"Training curves: {rep.name}", sub), height=400, legend={"orientation": "h", "y": -0.3})
    return fig


def roc_figure(reps: dict, points: dict) -> go.Figure:
    """ROC curves of the models on one chart; ``points``: variant -> (threshold, confusion dict)."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"color": OKABE_ITO["grey"], "dash": "dot"},
                    hoverinfo="skip")
    for v, rep in reps.items():
        roc = rep.roc
        fig.add_scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", line={"color": model_colour(v),
                        "dash": MODEL_DASH.get(v, "solid"), "width": 2.5}, customdata=roc["threshold"],
                        name=f"{reports.short_name(v)} (AUC {reports.auc_of(rep):.3f})",
                        hovertemplate="FPR %{x:.3f}, TPR %{y:.3f}, threshold %{customdata:.3f}<extra></extra>")
        if v in points:
            t, m = points[v]
            fig.add_scatter(x=[m["fpr"]], y=[m["tpr"]], mode="markers", name=f"{reports.short_name(v)} at {t:.3f}",
                            marker={"color": model_colour(v), "size": 14, "symbol": MODEL_SYMBOL.get(v, "circle"),
                                    "line": {"color": "black", "width": 1.5}},
                            hovertemplate=f"threshold {t:.3f}: sensitivity %{{y:.3f}}, 1 - specificity %{{x:.3f}}"
                                          "<extra></extra>")
    cap = next(iter(reps.values())).data_caption() if reps else ""
    _apply_title(fig, _title("ROC curves on the test split", cap, _markers_line(points)),
                 xaxis={"title": "1 - specificity (FPR)", "range": [-0.01, 1.01], "constrain": "domain"},
                 yaxis={"title": "Sensitivity (TPR)", "range": [-0.01, 1.01],
                        "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"},
                 # one entry a line under the plot: beside it, the legend would squeeze a narrow chart
                 legend={"orientation": "v", "x": 0, "y": -0.14, "yanchor": "top"},
                 height=620, margin={"l": 60, "r": 10})
    return fig


def confusion_figure(rep: reports.VariantReport, m: dict, threshold: float, height: int = 330) -> go.Figure:
    """Counts and row rates (share of each true class) as a heatmap coloured by rate."""
    cm = np.asarray(m["confusion_matrix"])
    rates = np.asarray(m["rates"])
    names = ["NORMAL", "PNEUMONIA"]
    xs, ys = names, names
    # No colour bar: each cell states its share, and the bar took a third of a narrow chart.
    fig = go.Figure(go.Heatmap(z=rates, x=xs, y=ys, zmin=0, zmax=1, colorscale=[[0, "#f4f8fb"], [1, OKABE_ITO["blue"]]],
                               showscale=False, customdata=cm,
                               hovertemplate="true %{y}, predicted %{x}: %{customdata} (%{z:.1%})<extra></extra>"))
    for i in range(2):
        for j in range(2):
            fig.add_annotation(x=xs[j], y=ys[i], text=f"<b>{cm[i][j]}</b><br>{rates[i][j]:.1%}", showarrow=False,
                               font={"size": 14, "color": "white" if rates[i][j] > 0.55 else "#1a1a1a"})
    _apply_title(fig, _title(f"Confusion matrix: {reports.short_name(rep.variant)}",
                             f"threshold {threshold:.3f}; test split, {rep.test_n} images", rep.name),
                 xaxis={"title": "Model's label", "tickangle": 0, "tickfont": {"size": 11}},
                 yaxis={"title": "True label", "autorange": "reversed", "tickfont": {"size": 11}},
                 height=height, margin={"b": 40, "l": 84, "r": 10})
    return fig


def pr_figure(reps: dict, curves: dict, points: dict) -> go.Figure:
    fig = go.Figure()
    for v, (pr, ap) in curves.items():
        fig.add_scatter(x=pr["recall"], y=pr["precision"], mode="lines", name=f"{reps[v].name} (AP {ap:.3f})",
                        line={"color": model_colour(v), "dash": MODEL_DASH.get(v, "solid")})
        if v in points:
            t, m = points[v]
            fig.add_scatter(x=[m["recall"]], y=[m["precision"]], mode="markers",
                            marker={"color": model_colour(v), "size": 12, "symbol": MODEL_SYMBOL.get(v, "circle"),
                                    "line": {"color": "black", "width": 1.5}},
                            name=f"{reports.short_name(v)} at {t:.3f}")
    cap = next(iter(reps.values())).data_caption() if reps else ""
    _apply_title(fig, _title("Precision-recall curves", cap, _markers_line(points)),
                 xaxis={"title": "Recall (sensitivity)", "range": [0, 1.01]},
                 yaxis={"title": "Precision (PPV)", "range": [0, 1.01]}, height=460,
                 legend={"orientation": "h", "y": -0.25})
    return fig


def calibration_figure(reps: dict, cals: dict) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                    line={"color": OKABE_ITO["grey"], "dash": "dot"})
    for v, cal in cals.items():
        fig.add_scatter(x=cal["mean_predicted"], y=cal["observed"], mode="lines+markers", name=reps[v].name,
                        line={"color": model_colour(v), "dash": MODEL_DASH.get(v, "solid")},
                        marker={"symbol": MODEL_SYMBOL.get(v, "circle"), "size": 8}, customdata=cal["n"],
                        hovertemplate="mean P %{x:.2f}, observed %{y:.2f} (n=%{customdata})<extra></extra>")
    cap = next(iter(reps.values())).data_caption() if reps else ""
    _apply_title(fig, _title("Calibration (reliability) on the test split", cap,
                             "10 equal-width bins; independent of the threshold"),
                 xaxis={"title": "Mean predicted P(pneumonia)", "range": [0, 1]},
                 yaxis={"title": "Observed fraction with pneumonia", "range": [0, 1.02]}, height=460,
                 legend={"orientation": "h", "y": -0.25})
    return fig


def plot(fig: go.Figure, caption: str | None = None, key: str | None = None) -> None:
    st.plotly_chart(fig, width="stretch", theme=None, key=key, config={"displaylogo": False})
    if caption:
        st.caption(caption)


# ============================================================================ home / about helpers
def models_overview(reps: dict) -> pd.DataFrame:
    rows = []
    for v, rep in reps.items():
        row = {"model": rep.name, "status": "ready" if rep.available else "not available yet",
               "matches evaluated model": "", "test AUC": None, "test accuracy": None, "threshold": None,
               "sha256": "", "file": f"models/{v}.keras", "training data": ""}
        block = rep.metrics.get("at_threshold")
        if block:
            row.update({"test AUC": round(block["auc"], 3), "test accuracy": round(block["accuracy"], 3),
                        "threshold": round(block["threshold"], 3)})
        d = rep.training.get("data", {})
        if d:
            row["training data"] = (f"{d.get('train_images')} train + {d.get('val_images')} val images, "
                                    f"{d.get('train_patients', 0) + d.get('val_patients', 0)} patients")
        if rep.model_present:
            sha = file_sha256(str(rep.model_path), rep.model_path.stat().st_mtime_ns)
            evaluated = rep.metrics.get("model_sha256")
            row["sha256"] = sha
            row["matches evaluated model"] = ("yes" if sha == evaluated else "NO: reports are stale") if evaluated \
                else "no report"
        rows.append(row)
    return pd.DataFrame(rows)


def shift_summary(reps: dict) -> str:
    """One sentence on the train -> test shift of the default model, with its own figures."""
    rep = reps.get(DEFAULT_VARIANT)
    test = rep.metrics.get("at_threshold") if rep else None
    val = rep.training.get("validation") if rep else None
    if not (test and val):
        return ""
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    return (f"On the official test split, a later batch from the same centre, the {rep.name}'s specificity at "
            f"its threshold {test['threshold']:.3f} falls from {val['specificity']:.1%} on validation to "
            f"{test['specificity']:.1%}: {fp} of {tn + fp} normal films are called PNEUMONIA, against {fn} of "
            f"{fn + tp} pneumonia films missed.")


def ci_caption(reps: dict) -> str:
    methods = sorted({reports.ci_description(r.metrics) for r in reps.values()})
    return ("Error bars: " + "; ".join(methods) + " (from metrics.json). Overlapping intervals do not by "
            "themselves show that two models are equivalent.")


def render_markdown_file(path: Path, missing_message: str) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        st.info(missing_message, icon=":material/description:")
        return False
    st.markdown(text)
    return True


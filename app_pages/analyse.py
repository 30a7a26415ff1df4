"""Analyse X-rays: score uploaded chest X-rays (or test-split examples) with a Grad-CAM explanation."""
import streamlit as st

from ui import widgets as w

w.page_setup("Analyse X-rays", ":material/radiology:")
st.title("Analyse X-rays")
st.caption("Each image is scored by the chosen model; the label depends on the operating point in the sidebar. "
           "Images stay in memory for this browser session only. A research and teaching aid: the label is the "
           "model's output, not a diagnosis.")

reps = w.get_reports()
variant = w.model_picker(reps)
if variant is None:
    st.stop()
predictor, error = w.get_predictor(variant)
if error:
    st.error(error)
    st.stop()
threshold, op_name = w.operating_point_picker(reps[variant])
alpha = st.sidebar.slider("Heatmap opacity", 0.0, 1.0, 0.4, 0.05, key="alpha", persist_state="session")

upload_tab, example_tab = st.tabs(["Upload images", "Try an example from the test split"])
with upload_tab:
    uploaded = st.file_uploader(w.upload_label(), type=w.UPLOAD_TYPES, accept_multiple_files=True,
                                key=w.UPLOADER_KEY, on_change=w.remember_uploads)
    files, n_kept = w.current_study(uploaded)
    if not files:
        st.info("Upload one or more frontal chest X-rays to score them. Several files give a review table.",
                icon=":material/upload:")
    else:
        if n_kept:
            left, right = st.columns([4, 1], vertical_alignment="center")
            left.caption(f"Showing {w.plural(n_kept, 'file')} uploaded earlier in this session (the uploader "
                         "empties when you visit another page); files you add join them.")
            right.button("Clear", on_click=w.forget_uploads, icon=":material/close:", key="clear_study")
        progress = st.progress(0.0, text="Scoring...") if len(files) > 1 else None
        preds = []
        for i, (name, data) in enumerate(files):
            preds.append(w.analyse(predictor, name, data))
            if progress:
                progress.progress((i + 1) / len(files), text=f"Scored {i + 1} of {len(files)}")
        if progress:
            progress.empty()
        if len(preds) > 1:
            w.render_review_table(preds, threshold, op_name, predictor)
        for i, pred in enumerate(preds):
            w.render_study(pred, threshold, op_name, alpha, predictor, key=f"upload_{i}")

with example_tab:
    example = w.example_picker()
    if example is not None:
        title, name, data, truth = example
        w.render_study(w.analyse(predictor, name, data), threshold, op_name, alpha, predictor, key="example",
                       true_label=truth, title=title)

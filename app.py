"""Pneumonia chest X-ray workbench: Streamlit entry point and Home page.

Run with ``streamlit run app.py`` (settings in .streamlit/config.toml). For research and
teaching only; not a diagnostic device.
"""
import streamlit as st

from ui import widgets as w
from ui.runtime import keep_kernels_between_reruns

keep_kernels_between_reruns()  # models are cached per process: Streamlit's Keras cleanup only costs kernels

PAGES_DIR = "app_pages"  # not "pages/": that name switches Streamlit to its legacy multipage mode


def home() -> None:
    w.page_setup("Home", ":material/home:")
    st.title(w.APP_TITLE)
    st.markdown(
        "This workbench classifies **paediatric chest X-rays** (frontal view) as **NORMAL** or **PNEUMONIA** "
        "with MobileNetV2 transfer learning trained on the public Kermany *et al.* (2018) dataset "
        "(children aged 1 to 5 from one hospital in Guangzhou). For every image it gives the model's score, "
        "the label at a chosen operating point, and a Grad-CAM heatmap of what drove the score. "
        "It also shows how the two shipped models compare on the official test split."
    )
    st.subheader("Shipped models")
    reps = w.get_reports()
    overview = w.models_overview(reps)
    st.dataframe(overview.assign(sha256=overview["sha256"].str.slice(0, 12)).drop(columns=["file"]),
                 hide_index=True, width="stretch",
                 column_config={"sha256": st.column_config.TextColumn("SHA-256 (first 12)"),
                               "matches evaluated model": st.column_config.TextColumn(
                                   "verified", help="The model file's SHA-256 equals the one its test report was "
                                                    "computed with"),
                                "test AUC": st.column_config.NumberColumn(format="%.3f"),
                                "test accuracy": st.column_config.NumberColumn(format="%.3f"),
                                "threshold": st.column_config.NumberColumn(format="%.3f")})
    caption = next((r.data_caption() for r in reps.values() if r.available), "the test split")
    st.caption(f"Test AUC and accuracy: {caption}, at each model's "
               "validation-chosen threshold. SHA-256 of each model file is checked against the one evaluated, "
               "and again when the model is loaded. Models load once per server process, on first use.")
    with st.expander("Full SHA-256 of the model files"):
        st.code("\n".join(f"{r.sha256}  {r.file}" for r in overview.itertuples() if r.sha256) or "no model file",
                language=None)
    w.show_missing(reps)

    st.subheader("Pages")
    st.page_link(ANALYSE, label="Analyse X-rays: upload films, get labels and heatmaps", icon=":material/radiology:")
    st.page_link(COMPARE, label="Compare models: metrics with 95% CIs, training curves", icon=":material/bar_chart:")
    st.page_link(ROC, label="ROC and confusion matrices at any threshold", icon=":material/show_chart:")
    st.page_link(ABOUT, label="About: limitations, model card, how to retrain", icon=":material/info:")
    st.subheader("Privacy")
    st.markdown("Uploaded images are processed in memory for your browser session only: they are not written to "
                "disk, logged, or sent anywhere. Closing the tab discards them.")


HOME = st.Page(home, title="Home", icon=":material/home:", default=True)
ANALYSE = st.Page(f"{PAGES_DIR}/analyse.py", title="Analyse X-rays", icon=":material/radiology:", url_path="analyse")
COMPARE = st.Page(f"{PAGES_DIR}/compare.py", title="Compare models", icon=":material/bar_chart:", url_path="compare")
ROC = st.Page(f"{PAGES_DIR}/roc.py", title="ROC and confusion matrices", icon=":material/show_chart:", url_path="roc")
ABOUT = st.Page(f"{PAGES_DIR}/about.py", title="About / model card", icon=":material/info:", url_path="about")

st.navigation([HOME, ANALYSE, COMPARE, ROC, ABOUT]).run()

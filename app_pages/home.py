"""Home: what the workbench does, the shipped models (verified by SHA-256), the other pages, privacy."""
import streamlit as st

from pneumo_core.review import decisions as review
from ui.cache import file_sha256, get_reports, show_missing
from ui.chrome import APP_TITLE
from ui.navigation import linked_pages, page_link

st.title(APP_TITLE)
st.markdown(
    "This workbench classifies **paediatric chest X-rays** (frontal view) as **NORMAL** or **PNEUMONIA** "
    "with MobileNetV2 transfer learning trained on the public Kermany *et al.* (2018) dataset "
    "(children aged 1 to 5 from one hospital in Guangzhou). For every image it gives the model's score, "
    "the label at a chosen operating point, and a Grad-CAM heatmap of what drove the score. "
    "It also shows how the two shipped models compare on the official test split."
)
st.subheader("Shipped models")
reps = get_reports()
overview = review.models_overview(reps, file_sha256)
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
show_missing(reps)

st.subheader("Pages")
for name in linked_pages():
    page_link(name)
st.subheader("Privacy")
st.markdown("Uploaded images are processed in memory for your browser session only: they are not written to "
            "disk, logged, or sent anywhere. Closing the tab discards them. File names can be hidden (each film "
            "shown as \"film\" and a short hash of its content, in the review table and the report too); films from "
            "a PACS show the study year at most.")

"""A one-widget page for the tests: the "From PACS" source (ui/pacs_source.py) on its own, then
each scored film in the viewer. The test puts its loaded predictor in ``st.session_state``;
run standalone (``streamlit run tests/helpers/harness/pacs_page.py``) it loads the shipped model."""
import streamlit as st

from ui.pacs_source import film_names, pacs_source
from ui.viewer import show_film

st.title("From PACS (test harness)")
st.caption("Research and teaching tool, not a diagnostic device.")
if "predictor" not in st.session_state:
    from pneumo_core.inference.predictor import Predictor

    st.session_state["predictor"] = Predictor("finetuned")
predictor = st.session_state["predictor"]
scored = pacs_source(predictor, key="pacs")
for number, (name, item) in enumerate(zip(film_names(scored), scored)):
    if item.loaded is not None:
        pred = item.prediction
        show_film(item.loaded, pred.heatmap, key=f"film-{number}", controls=False,
                  title=f"{name}: {pred.label} ({pred.model}, threshold {pred.threshold:.2f})")

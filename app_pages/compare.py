"""Compare models: frozen vs fine-tuned on the official test split, with the evaluation protocol."""
import streamlit as st

from pneumo_core.evaluation import reports
from pneumo_core.review import decisions as review
from ui.cache import evaluated_reports_or_stop, get_reports
from ui.chrome import plot
from ui.figures import history_figure, metrics_bar_figure
from ui.navigation import page_link

st.title("Compare models: frozen vs fine-tuned")
ready = evaluated_reports_or_stop("No evaluated model to compare yet.")

basis = st.radio("Metrics at", ["each model's validation-chosen threshold", "threshold 0.5 for both"],
                 horizontal=True, key="compare_basis")
which = "at_threshold" if basis.startswith("each") else "at_0.5"
table = reports.metrics_table(ready, which)
data_caption = next(iter(ready.values())).data_caption()

chart, protocol = st.columns([3, 2], gap="large")
with chart:
    plot(metrics_bar_figure(table, f"at {basis}", data_caption), key="metrics_bar",
         caption=review.ci_caption(ready))
    st.dataframe(reports.metrics_wide(table), width="stretch")
with protocol:
    st.subheader("Protocol")
    for rep in ready.values():
        with st.expander(rep.name, expanded=True):
            for heading, text in reports.protocol(rep).items():
                st.markdown(f"**{heading}.** {text}")
    page_link("protocols", "Why these figures are lower than a random re-split's (the write-up's 96.59 %)")

st.subheader("Training curves")
st.caption("Loss and AUC per epoch on the training and validation parts of the Kermany train folder "
           "(the test split is never seen during training).")
for variant, rep in get_reports().items():
    if rep.ensemble:
        st.markdown(f"**{rep.name}** is an output ensemble: it averages the logits of the runs below, each "
                    "fine-tuned from the same ImageNet weights and validated on the same films. It has no "
                    "training curve of its own.")
        st.dataframe(reports.run_members(rep), hide_index=True, width="stretch")
    elif rep.soup:
        st.markdown(f"**{rep.name}** was chosen by a greedy weight soup: the element-wise average of the runs "
                    "marked *in model* below (one run when averaging did not lower the validation loss), each "
                    "fine-tuned from the same ImageNet weights and scored on the validation part only.")
        st.dataframe(reports.run_members(rep), hide_index=True, width="stretch")
    if rep.history is not None:
        plot(history_figure(rep), key=f"history_{variant}")
    elif not (rep.soup or rep.ensemble):
        st.info(f"{rep.name}: no training history yet.")

"""ROC curves and confusion matrices of the shipped models at adjustable thresholds (saved test scores)."""
import streamlit as st

from pneumo_core.review import decisions as review
from ui.cache import confusion, curves, evaluated_reports_or_stop
from ui.chrome import plot
from ui.controls import operating_point_picker
from ui.figures import calibration_figure, confusion_figure, pr_figure, roc_figure
from ui.study import calibration_caption, model_calibration

st.title("ROC curves and confusion matrices")
st.caption("Computed from the saved test-split scores (test_predictions.csv); no model is re-run. A threshold "
           "moved here is also used on the Analyse page.")
ready = evaluated_reports_or_stop("No evaluated model yet.")

points = {}  # variant -> (threshold, test metrics at it)
for column, (variant, rep) in zip(st.columns(len(ready), gap="large"), ready.items()):
    threshold, _ = operating_point_picker(rep, container=column)
    points[variant] = (threshold, confusion(variant, threshold))

roc_col, cm_col = st.columns([1.05, 1], gap="medium")
with roc_col:
    plot(roc_figure(ready, points), key="roc")
with cm_col:
    for variant, rep in ready.items():
        threshold, at_threshold = points[variant]
        plot(confusion_figure(rep, at_threshold, threshold, height=300), key=f"cm_{variant}")
        npv = review.npv(at_threshold["confusion_matrix"])
        st.markdown(f"Sensitivity **{at_threshold['recall']:.1%}**, specificity **{at_threshold['specificity']:.1%}**, "
                    f"PPV **{at_threshold['precision']:.1%}**, NPV **{npv:.1%}**, "
                    f"accuracy **{at_threshold['accuracy']:.1%}**.")
    st.caption("Cells: count and share of the true class (rows sum to 100%).")

with st.expander("Precision-recall and calibration"):
    # One under the other: side by side, each chart was too narrow on a 1024 px screen.
    plot(pr_figure(ready, {variant: curves(variant) for variant in ready}, points), key="pr")
    for variant, rep in ready.items():
        calibration, why_not = model_calibration(rep.report_dir)
        if calibration is None:
            st.caption(f"{rep.name}: no reliability diagram, {why_not}.")
            continue
        plot(calibration_figure(rep, calibration), key=f"calibration_{variant}",
             caption=calibration_caption(rep, calibration))

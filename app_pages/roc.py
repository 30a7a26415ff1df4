"""ROC curves and confusion matrices of the shipped models at adjustable thresholds (saved test scores)."""
import streamlit as st

from ui import widgets as w

w.page_setup("ROC and confusion matrices", ":material/show_chart:")
st.title("ROC curves and confusion matrices")
st.caption("Computed from the saved test-split scores (test_predictions.csv); no model is re-run. A threshold "
           "moved here is also used on the Analyse page.")
ready = w.evaluated_reports_or_stop("No evaluated model yet.")

points = {}
for col, (v, rep) in zip(st.columns(len(ready), gap="large"), ready.items()):
    threshold, _ = w.operating_point_picker(rep, container=col)
    points[v] = (threshold, w.confusion(v, threshold))

roc_col, cm_col = st.columns([1.05, 1], gap="medium")
with roc_col:
    w.plot(w.roc_figure(ready, points), key="roc")
with cm_col:
    for v, rep in ready.items():
        threshold, m = points[v]
        w.plot(w.confusion_figure(rep, m, threshold, height=300), key=f"cm_{v}")
        (tn, fp), (fn, tp) = m["confusion_matrix"]
        npv = tn / (tn + fn) if (tn + fn) else 0.0
        st.markdown(f"Sensitivity **{m['recall']:.1%}**, specificity **{m['specificity']:.1%}**, "
                    f"PPV **{m['precision']:.1%}**, NPV **{npv:.1%}**, accuracy **{m['accuracy']:.1%}**.")
    st.caption("Cells: count and share of the true class (rows sum to 100%).")

with st.expander("Precision-recall and calibration"):
    curves = {v: w.curves(v) for v in ready}
    # One under the other: side by side, each chart was too narrow on a 1024 px screen.
    w.plot(w.pr_figure(ready, {v: (c[0], c[1]) for v, c in curves.items()}, points), key="pr")
    w.plot(w.calibration_figure(ready, {v: c[2] for v, c in curves.items()}), key="calibration",
           caption="Points below the diagonal: the model's score overstates the pneumonia rate.")

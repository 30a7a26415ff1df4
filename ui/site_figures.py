"""Altair (Vega-Lite) charts of the "Your site" page, pure: data in, chart out (no Streamlit). Every title carries
its provenance underneath: the model and its version, the site's reads it rests on, the threshold. Reader names are
data: Vega-Lite draws them as plain text, as typed."""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

from ui.chart_base import LINE, OKABE_ITO, STAR, X_MARK, series_channels, title, unit_scale
from ui.figures import DASHED, DOTTED, SOLID, reliability_panels

SIDE = 440  # px, width and height of the ROC plot: its axes are square (drawn at this size, not stretched)
#: One shape a reader (cycled past eight); circle and diamond mark the model's own points.
READER_SHAPES = (STAR, "triangle-up", "square", "cross", X_MARK, "triangle-down", "triangle-left", "triangle-right")


def _rate(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def site_roc_figure(roc: dict, at_active: dict, at_proposed: dict | None, readers: list[dict], model_text: str,
                    data_text: str) -> alt.LayerChart:
    """The model's ROC curve on the site's films, its points at the active and the proposed threshold, and each
    reader's point (``readers``: :func:`pneumo_core.storage.reads.reader_points`, names as they may be shown)."""
    series = [("chance", OKABE_ITO["grey"], DOTTED, LINE),
              (f"model (AUC {_rate(at_active['auc'])})", OKABE_ITO["blue"], SOLID, LINE)]
    lines = [pd.DataFrame({"series": series[0][0], "fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}),
             pd.DataFrame({"series": series[1][0], "fpr": roc["fpr"], "tpr": roc["tpr"],
                           "threshold": roc["threshold"]})]
    model_points = []
    for block, what, colour, shape in ((at_active, "active", OKABE_ITO["blue"], "circle"),
                                       (at_proposed, "proposed", OKABE_ITO["vermillion"], "diamond")):
        if block is None or math.isnan(block["specificity"]) or math.isnan(block["sensitivity"]):
            continue
        series.append((f"model at the {what} threshold {block['threshold']:.3f}", colour, SOLID, shape))
        model_points.append({"series": series[-1][0], "fpr": 1 - block["specificity"], "tpr": block["sensitivity"],
                             "threshold": block["threshold"], "sensitivity": block["sensitivity"],
                             "specificity": block["specificity"]})
    reader_points = []
    for i, point in enumerate(p for p in readers if p["sensitivity"] is not None and p["specificity"] is not None):
        series.append((f"{point['label']}: sensitivity {_rate(point['sensitivity'])}, specificity "
                       f"{_rate(point['specificity'])} ({point['n']} films)", OKABE_ITO["orange"], SOLID,
                       READER_SHAPES[i % len(READER_SHAPES)]))
        reader_points.append({"series": series[-1][0], "reader": point["label"], "fpr": 1 - point["specificity"],
                              "tpr": point["sensitivity"], "sensitivity": point["sensitivity"],
                              "specificity": point["specificity"], "films": point["n"]})
    legend = alt.Legend(title=None, orient="bottom", direction="vertical", columns=1, labelLimit=SIDE + 120,
                        labelFontSize=12, symbolStrokeWidth=2, symbolSize=120)
    labels, colours, dashes, shapes = zip(*series)  # (label, colour, dash, shape) a series, in one legend
    enc = series_channels("series", labels, legend, color=colours, strokeDash=dashes, shape=shapes)
    axes = {"x": alt.X("fpr:Q", title="1 - specificity (FPR)", scale=unit_scale()),
            "y": alt.Y("tpr:Q", title="Sensitivity (TPR)", scale=unit_scale())}
    rates = [alt.Tooltip("sensitivity:Q", format=".3f"), alt.Tooltip("specificity:Q", format=".3f")]
    layers = [alt.Chart(lines[0]).mark_line(strokeWidth=1.5).encode(
                  **axes, color=enc["color"], strokeDash=enc["strokeDash"], tooltip=alt.value(None)),
              # transparent points at the vertices: a line alone answers for its first point only
              alt.Chart(lines[1]).mark_line(strokeWidth=2.5, interpolate="step-after", point="transparent").encode(
                  **axes, color=enc["color"], strokeDash=enc["strokeDash"],
                  tooltip=[alt.Tooltip("fpr:Q", title="FPR", format=".3f"),
                           alt.Tooltip("tpr:Q", title="TPR", format=".3f"), alt.Tooltip("threshold:Q", format=".3f")])]
    if model_points:
        layers.append(alt.Chart(pd.DataFrame(model_points)).mark_point(
            filled=True, size=200, opacity=1, stroke="black", strokeWidth=1.5).encode(
            **axes, color=enc["color"], shape=enc["shape"],
            tooltip=[alt.Tooltip("series:N", title="point"), alt.Tooltip("threshold:Q", format=".3f"), *rates]))
    if reader_points:
        layers.append(alt.Chart(pd.DataFrame(reader_points)).mark_point(
            filled=True, size=260, opacity=1, stroke="black", strokeWidth=1).encode(
            **axes, color=enc["color"], shape=enc["shape"],
            tooltip=[alt.Tooltip("reader:N"), *rates, alt.Tooltip("films:Q", title="films with a class")]))
    return alt.layer(*layers).properties(
        title=title("The model and its readers on this site's films", model_text, data_text,
                    "readers: each against the reference standard, else the other readers"),
        width=SIDE, height=SIDE, autosize=alt.AutoSizeParams(type="pad"), padding={"right": 16, "top": 5})


def drift_figure(weeks: list[dict], model_text: str, threshold: float) -> alt.VConcatChart:
    """Per week: reads and films first read, the share the model called PNEUMONIA at ``threshold``, and the mean
    OOD distance (``weeks``: rows with week, reads, films, positive_rate, mean_ood_distance), in three panels
    sharing the week axis."""
    order = [w["week"] for w in weeks]
    counts = pd.DataFrame([{"week": w["week"], "count": w[key], "what": what} for w in weeks
                           for key, what in (("reads", "reads"), ("films", "films first read"))],
                          columns=["week", "count", "what"])
    rates = pd.DataFrame(weeks, columns=["week", "positive_rate", "mean_ood_distance"])

    def week_axis(last: bool) -> alt.X:  # the week labels once, under the bottom panel
        return alt.X("week:O", sort=order, title="week of each film's first read (starting Monday)" if last else None,
                     axis=alt.Axis(labelAngle=-45) if last else alt.Axis(labels=False, ticks=False))

    what = ["reads", "films first read"]
    legend = alt.Legend(title=None, orient="top", direction="horizontal")
    reads = alt.Chart(counts, title="Reads and films a week").mark_bar(stroke="black", strokeWidth=1).encode(
        x=week_axis(False), xOffset=alt.XOffset("what:N", sort=what), y=alt.Y("count:Q", title="count"),
        **series_channels("what", what, legend, color=[OKABE_ITO["sky"], OKABE_ITO["blue"]],
                          strokeDash=[SOLID, DASHED]),
        tooltip=[alt.Tooltip("week:O"), alt.Tooltip("what:N", title="count of"), alt.Tooltip("count:Q")])
    called = alt.Chart(rates, title=f"Called PNEUMONIA at {threshold:.3f}").mark_line(
        color=OKABE_ITO["vermillion"], point=alt.OverlayMarkDef(shape="square", size=50, filled=True,
                                                                color=OKABE_ITO["vermillion"])).encode(
        x=week_axis(False), y=alt.Y("positive_rate:Q", title=f"positive rate at {threshold:.3f}",
                                    scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".0%")),
        tooltip=[alt.Tooltip("week:O"), alt.Tooltip("positive_rate:Q", title="called PNEUMONIA", format=".1%")])
    ood = alt.Chart(rates, title="Mean OOD distance").mark_line(
        color=OKABE_ITO["green"], strokeDash=DASHED, point=alt.OverlayMarkDef(shape="diamond", size=60, filled=True,
                                                                            color=OKABE_ITO["green"])).encode(
        x=week_axis(True), y=alt.Y("mean_ood_distance:Q", title="mean OOD distance", scale=alt.Scale(zero=False),
                                    axis=alt.Axis(format=".1f")),
        tooltip=[alt.Tooltip("week:O"), alt.Tooltip("mean_ood_distance:Q", title="mean OOD distance", format=".2f")])
    return alt.vconcat(reads.properties(height=160), called.properties(height=130),
                       ood.properties(height=130), spacing=12).resolve_scale(x="shared").properties(
        title=title("Drift by week (week of each film's first read)", model_text,
                    f"positive rate at the active threshold {threshold:.3f}"))


def site_reliability_figure(figures: dict, model_text: str, data_text: str) -> alt.HConcatChart:
    """The reliability diagram of the site's films: the raw score and the score recalibrated on these same reads
    (``figures``: :func:`pneumo_core.site.calibration.calibration_figures`)."""
    from pneumo_core.site.calibration import ECE_BINS

    return reliability_panels([(f"This site's reads, {figures['n']} films", figures)],
                              "Recalibration from this site's reads", model_text, data_text,
                              f"{ECE_BINS} equal-width bins; fitted and shown on the same reads (optimistic)")

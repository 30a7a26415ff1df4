"""Plotly figures of the "Your site" page, pure: data in, ``go.Figure`` out (no Streamlit). Every title carries its
provenance underneath: the model and its version, the site's reads it rests on, the threshold."""
from __future__ import annotations

import html
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures import OKABE_ITO, _apply_title, _title, reliability_panels

READER_SYMBOLS = ("star", "triangle-up", "square", "diamond", "cross", "x", "pentagon", "hexagon")


def _rate(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def site_roc_figure(roc: dict, at_active: dict, at_proposed: dict | None, readers: list[dict], model_text: str,
                    data_text: str) -> go.Figure:
    """The model's ROC curve on the site's films, its points at the active and the proposed threshold, and each
    reader's point (``readers``: :func:`pneumo_core.storage.reads.reader_points`, names as they may be shown)."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", hoverinfo="skip",
                    line={"color": OKABE_ITO["grey"], "dash": "dot"})
    fig.add_scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", line={"color": OKABE_ITO["blue"], "width": 2.5},
                    line_shape="hv", customdata=roc["threshold"], name=f"model (AUC {_rate(at_active['auc'])})",
                    hovertemplate="FPR %{x:.3f}, TPR %{y:.3f}, threshold %{customdata:.3f}<extra></extra>")
    for block, what, colour, symbol in ((at_active, "active", OKABE_ITO["blue"], "circle"),
                                        (at_proposed, "proposed", OKABE_ITO["vermillion"], "diamond")):
        if block is None or math.isnan(block["specificity"]) or math.isnan(block["sensitivity"]):
            continue
        fig.add_scatter(x=[1 - block["specificity"]], y=[block["sensitivity"]], mode="markers",
                        name=f"model at the {what} threshold {block['threshold']:.3f}",
                        marker={"color": colour, "size": 14, "symbol": symbol,
                                "line": {"color": "black", "width": 1.5}})
    for i, point in enumerate(p for p in readers if p["sensitivity"] is not None and p["specificity"] is not None):
        fig.add_scatter(x=[1 - point["specificity"]], y=[point["sensitivity"]], mode="markers",
                        name=f"{html.escape(point['label'])}: sensitivity {_rate(point['sensitivity'])}, specificity "
                             f"{_rate(point['specificity'])} ({point['n']} films)",
                        marker={"color": OKABE_ITO["orange"], "size": 16, "line": {"color": "black", "width": 1},
                                "symbol": READER_SYMBOLS[i % len(READER_SYMBOLS)]})
    _apply_title(fig, _title("The model and its readers on this site's films", model_text, data_text,
                             "readers: each against the reference standard, else the other readers"),
                 xaxis={"title": "1 - specificity (FPR)", "range": [-0.01, 1.01], "constrain": "domain"},
                 yaxis={"title": "Sensitivity (TPR)", "range": [-0.01, 1.01], "scaleanchor": "x", "scaleratio": 1,
                        "constrain": "domain"},
                 legend={"orientation": "v", "x": 0, "y": -0.14, "yanchor": "top"}, height=640,
                 margin={"l": 60, "r": 10})
    return fig


def drift_figure(weeks: list[dict], model_text: str, threshold: float) -> go.Figure:
    """Per week: reads and films first read, the share the model called PNEUMONIA at ``threshold``, and the mean
    OOD distance (``weeks``: rows with week, reads, films, positive_rate, mean_ood_distance)."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Reads and films a week", "Called PNEUMONIA", "Mean OOD distance"))
    x = [w["week"] for w in weeks]
    fig.add_bar(x=x, y=[w["reads"] for w in weeks], name="reads", marker_color=OKABE_ITO["sky"], row=1, col=1)
    fig.add_scatter(x=x, y=[w["films"] for w in weeks], name="films first read", mode="lines+markers",
                    line={"color": OKABE_ITO["blue"]}, row=1, col=1)
    fig.add_scatter(x=x, y=[w["positive_rate"] for w in weeks], name=f"positive rate at {threshold:.3f}",
                    mode="lines+markers", line={"color": OKABE_ITO["vermillion"]}, row=2, col=1)
    fig.add_scatter(x=x, y=[w["mean_ood_distance"] for w in weeks], name="mean OOD distance", mode="lines+markers",
                    line={"color": OKABE_ITO["green"], "dash": "dash"}, row=3, col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1], row=2, col=1)
    _apply_title(fig, _title("Drift by week (week of each film's first read)", model_text,
                             f"positive rate at the active threshold {threshold:.3f}"),
                 height=620, legend={"orientation": "h", "x": 0, "y": -0.08, "yanchor": "top"})
    return fig


def site_reliability_figure(figures: dict, model_text: str, data_text: str) -> go.Figure:
    """The reliability diagram of the site's films: the raw score and the score recalibrated on these same reads
    (``figures``: :func:`pneumo_core.site.calibration.calibration_figures`)."""
    from pneumo_core.site.calibration import ECE_BINS

    return reliability_panels([(f"This site's reads, {figures['n']} films", figures)],
                              "Recalibration from this site's reads", model_text, data_text,
                              f"{ECE_BINS} equal-width bins; fitted and shown on the same reads (optimistic)")

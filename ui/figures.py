"""Plotly figures of the dashboard, pure: data in, ``go.Figure`` out (no Streamlit).

Every chart's title carries its provenance underneath (data, model, threshold), and models are
told apart by colour (Okabe-Ito, safe for the common colour-vision deficiencies) and by a second
cue (dash, marker symbol, bar pattern).
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pneumo_core.evaluation import reports

OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000", "grey": "#999999"}
MODEL_COLOURS = {"finetuned": OKABE_ITO["blue"], "frozen": OKABE_ITO["orange"]}
MODEL_DASH = {"finetuned": "solid", "frozen": "dash"}  # a second cue besides colour
MODEL_SYMBOL = {"finetuned": "circle", "frozen": "diamond"}


def model_colour(variant: str) -> str:
    """The colour a model is drawn in on every chart."""
    return MODEL_COLOURS.get(variant, OKABE_ITO["black"])


SUBTITLE_CHARS = 42  # Plotly does not wrap titles: lines this short fit a half-width chart on a 1024 px screen


def _title(text: str, *subs: str) -> dict:
    """A chart title with its provenance (data, model, threshold) underneath, wrapped by hand so
    it stays readable on a projector; ``margin_top`` is the room it needs."""
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
    """Grouped bars of each model's test metrics with their 95% CIs (``table``: reports.metrics_table)."""
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
    """Loss and AUC per epoch, training and validation, with the start of fine-tuning marked."""
    epochs = rep.history
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss (binary cross-entropy)", "ROC AUC"))
    colour = model_colour(rep.variant)
    for col, metric in ((1, "loss"), (2, "auc")):
        fig.add_scatter(x=epochs["step"], y=epochs[metric], mode="lines+markers", name="training",
                        line={"color": colour},
                        marker={"size": 4}, legendgroup="train", showlegend=col == 1, row=1, col=col)
        fig.add_scatter(x=epochs["step"], y=epochs[f"val_{metric}"], mode="lines+markers", name="validation",
                        line={"color": OKABE_ITO["black"], "dash": "dot"}, marker={"size": 4, "symbol": "square"},
                        legendgroup="val", showlegend=col == 1, row=1, col=col)
        fig.update_xaxes(title_text="Epoch (head, then fine-tune)" if (epochs["phase"] == "fine-tune").any()
                         else "Epoch (head training)", row=1, col=col)
    fig.update_yaxes(title_text="Loss", row=1, col=1)
    fig.update_yaxes(title_text="AUC", row=1, col=2)
    fine_tune = epochs.loc[epochs["phase"] == "fine-tune", "step"]
    if len(fine_tune):
        fig.add_vline(x=float(fine_tune.iloc[0]) - 0.5, line_dash="dash", line_color=OKABE_ITO["grey"],
                      annotation_text="fine-tuning starts", annotation_position="top left")
    data = rep.training.get("data", {})
    sub = (f"training {data.get('train_images', '?')} / validation {data.get('val_images', '?')} images "
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
    """Precision-recall curves (``curves``: variant -> (curve, average precision)) with each
    model's current threshold marked (``points``: variant -> (threshold, metrics))."""
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


def reliability_panels(panels: list[tuple[str, dict]], title: str, *subs: str) -> go.Figure:
    """Reliability diagrams side by side, one panel per labelled set (``panels``: (panel title, figures of
    :func:`pneumo_core.site.calibration.calibration_figures`)), the raw and the calibrated score in each."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[name for name, _ in panels], horizontal_spacing=0.1)
    for col, (_, figures) in enumerate(panels, start=1):
        fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", hoverinfo="skip",
                        line={"color": OKABE_ITO["grey"], "dash": "dot"}, legendgroup="diag", showlegend=col == 1,
                        row=1, col=col)
        for which, colour, dash, symbol in (("raw", OKABE_ITO["vermillion"], "dash", "diamond"),
                                            ("calibrated", OKABE_ITO["green"], "solid", "circle")):
            bins = figures[f"reliability_{which}"]
            fig.add_scatter(x=[b["mean_p"] for b in bins], y=[b["observed"] for b in bins], mode="lines+markers",
                            name=f"{which} score", legendgroup=which, showlegend=col == 1,
                            line={"color": colour, "dash": dash}, marker={"symbol": symbol, "size": 8},
                            customdata=[b["n"] for b in bins], row=1, col=col,
                            hovertemplate=f"{which}: mean P %{{x:.2f}}, observed %{{y:.2f}} (n=%{{customdata}})"
                                          "<extra></extra>")
        fig.update_xaxes(title_text="Mean predicted P(pneumonia)", range=[0, 1], row=1, col=col)
        fig.update_yaxes(title_text="Observed fraction with pneumonia" if col == 1 else None, range=[0, 1.02],
                         row=1, col=col)
    _apply_title(fig, _title(title, *subs), height=460, legend={"orientation": "h", "y": -0.25})
    return fig


def calibration_figure(rep: reports.VariantReport, calibration) -> go.Figure:
    """Reliability diagrams of one model's scores, raw and calibrated, on validation (where the calibration was
    fitted) and on the test split (reported only), from its ``calibration.json`` (``calibration``:
    :class:`pneumo_core.site.calibration.Calibration`)."""
    from pneumo_core.site.calibration import ECE_BINS

    shown = {"validation": "Validation (fitted on)", "test": "Test (reported only)"}
    panels = [(f"{shown.get(name.split(' ', 1)[0], name)}, {figures['n']} films", figures)
              for name, figures in calibration.figures.items()]
    return reliability_panels(panels, f"Calibration (reliability): {rep.name}",
                              "validation: patient-grouped split of train/; test: the official test split, "
                              "never fitted on",
                              f"{ECE_BINS} equal-width bins; logistic calibration (temperature "
                              f"{calibration.temperature:.2f}, offset {calibration.bias:+.2f}); independent of the "
                              "threshold")

"""Plotly figures of the reader quiz: one reader on the model's ROC curve, and the whole class.

Every figure names the model, the films and the threshold in its title. Colours are Okabe-Ito
(colour-vision safe) and each trace has a second cue (dash or marker shape) besides colour.
"""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from pneumo_core.evaluation.reports import display_name, load_report
from ui.quiz_widgets import plotly_text

MODEL_COLOUR = "#0072B2"  # blue
TEST_COLOUR = "#999999"  # grey
READER_COLOUR = "#D55E00"  # vermillion
CLASS_COLOUR = "#009E73"  # green
CHANCE = {"x": [0, 1], "y": [0, 1], "mode": "lines", "line": {"color": "#cccccc", "dash": "dot", "width": 1},
          "name": "chance", "hoverinfo": "skip"}


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _layout(fig: go.Figure, title: str, subtitle: list[str], height: int = 560) -> go.Figure:
    fig.update_layout(
        title={"text": f"{title}<br><sup>{'<br>'.join(subtitle)}</sup>", "x": 0.0, "font": {"size": 15}},
        height=height, margin={"l": 60, "r": 20, "t": 70 + 16 * len(subtitle), "b": 60}, template="plotly_white",
        legend={"x": 0.42, "y": 0.04, "bgcolor": "rgba(255,255,255,0.85)", "bordercolor": "#ddd", "borderwidth": 1},
        xaxis={"title": "1 - specificity (false-positive rate)", "range": [-0.02, 1.02], "constrain": "domain"},
        yaxis={"title": "sensitivity (true-positive rate)", "range": [-0.02, 1.02], "scaleanchor": "x"},
    )
    return fig


def test_split_caption(variant: str) -> str:
    """Which data the full-test-split curve comes from (the shipped report)."""
    report = load_report(variant)
    return report.data_caption() if report.test_n else "the official test split"


def reader_figure(chart: dict, variant: str, threshold: float | None, films_text: str) -> go.Figure:
    """The reader's result chart (``chart``: :func:`reader_study.reader_chart`): the model's ROC on
    the quiz films and on the full test split, the model's and the reader's operating points, and
    the reader's ROC from their confidence ratings."""
    model = display_name(variant)
    fig = go.Figure(go.Scatter(**CHANCE))
    test = chart["test_roc"]
    if test is not None and len(test):
        fig.add_trace(go.Scatter(x=test["fpr"], y=test["tpr"], mode="lines", name="model, full test split",
                                 line={"color": TEST_COLOUR, "dash": "dash", "width": 2}))
    roc = chart["model_roc"]
    if len(roc):
        fig.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", line={"color": MODEL_COLOUR, "width": 3},
                                 name=f"model on these films (AUC {_num(chart['model_auc'])})",
                                 line_shape="hv"))
    point = chart["model_point"]
    if not math.isnan(point["fpr"]):
        fig.add_trace(go.Scatter(x=[point["fpr"]], y=[point["tpr"]], mode="markers",
                                 marker={"symbol": "circle", "size": 12, "color": MODEL_COLOUR},
                                 name=f"model at threshold {_num(threshold)}"))
    mine = chart["reader_roc"]
    if len(mine):
        fig.add_trace(go.Scatter(x=mine["fpr"], y=mine["tpr"], mode="lines+markers",
                                 line={"color": READER_COLOUR, "dash": "dashdot", "width": 2},
                                 marker={"symbol": "square", "size": 6},
                                 name=f"you, from your confidence (AUC {_num(chart['reader_auc'])})"))
    you = chart["reader_point"]
    if not (math.isnan(you["fpr"]) or math.isnan(you["tpr"])):
        fig.add_trace(go.Scatter(x=[you["fpr"]], y=[you["tpr"]], mode="markers",
                                 marker={"symbol": "star", "size": 20, "color": READER_COLOUR,
                                         "line": {"color": "black", "width": 1}},
                                 name=f"you: sensitivity {_num(you['tpr'])}, specificity {_num(1 - you['fpr'])}"))
    return _layout(fig, f"Your reading against the {model}",
                   [f"{films_text}; model threshold {_num(threshold)} (chosen on validation)",
                    f"grey dashed: the same model on the {test_split_caption(variant)}"])


def class_figure(model: dict, table: pd.DataFrame, summary: dict, variant: str, threshold: float | None,
                 films_text: str) -> go.Figure:
    """Every reader's operating point on the model's ROC curve for the quiz films, with the class
    mean and its spread (one standard deviation each way). ``model``: :func:`reader_study.model_on_films`;
    ``table``: :func:`reader_study.reader_table`; ``summary``: :func:`reader_study.class_summary`."""
    fig = go.Figure(go.Scatter(**CHANCE))
    if len(model["roc"]):
        fig.add_trace(go.Scatter(x=model["roc"]["fpr"], y=model["roc"]["tpr"], mode="lines", line_shape="hv",
                                 line={"color": MODEL_COLOUR, "width": 3},
                                 name=f"model on these films (AUC {_num(model['auc'])})"))
    if not math.isnan(model["fpr"]):
        fig.add_trace(go.Scatter(x=[model["fpr"]], y=[model["tpr"]], mode="markers",
                                 marker={"symbol": "circle", "size": 12, "color": MODEL_COLOUR},
                                 name=f"model at threshold {_num(threshold)}"))
    shown = table.dropna(subset=["fpr", "tpr"])
    if len(shown):
        fig.add_trace(go.Scatter(
            x=shown["fpr"], y=shown["tpr"], mode="markers", name=f"readers ({len(shown)})",
            marker={"symbol": "x", "size": 11, "color": READER_COLOUR},
            text=[plotly_text(n) for n in shown["nickname"]],
            hovertemplate="%{text}<br>sensitivity %{y:.3f}<br>1 - specificity %{x:.3f}<extra></extra>"))
    sens, spec = summary["sensitivity"], summary["specificity"]
    if not (math.isnan(sens["mean"]) or math.isnan(spec["mean"])):
        spread = {"x": 0.0 if math.isnan(spec["sd"]) else spec["sd"],
                  "y": 0.0 if math.isnan(sens["sd"]) else sens["sd"]}
        fig.add_trace(go.Scatter(
            x=[1 - spec["mean"]], y=[sens["mean"]], mode="markers",
            marker={"symbol": "diamond", "size": 15, "color": CLASS_COLOUR, "line": {"color": "black", "width": 1}},
            error_x={"type": "constant", "value": spread["x"], "color": CLASS_COLOUR},
            error_y={"type": "constant", "value": spread["y"], "color": CLASS_COLOUR},
            name=f"class mean ± 1 SD (sensitivity {_num(sens['mean'])}, specificity {_num(spec['mean'])})"))
    return _layout(fig, f"The class against the {display_name(variant)}",
                   [f"{films_text}; model threshold {_num(threshold)} (chosen on validation)"])

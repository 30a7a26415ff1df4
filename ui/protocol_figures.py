"""Plotly figures for the "Why results differ" page (app_pages/protocols.py): pure builders over the
tables of ``pneumo_core.evaluation.protocol_results``; no Streamlit here."""
from __future__ import annotations

import json
import math

import pandas as pd
import plotly.graph_objects as go

from pneumo_core.datasets.protocols import PROTOCOLS
from pneumo_core.evaluation.protocol_results import PROTOCOL_NAMES, VARIANT_NAMES, VARIANTS

# Okabe-Ito, the palette the other pages use for the two recipes (colour-blind safe).
RECIPE_COLOURS = {"frozen": "#E69F00", "finetuned": "#0072B2"}
WRITEUP_LABEL = "reference write-up<br>(image-level random split)"
#: Horizontal offset of each recipe within its protocol's slot, so the two intervals do not overlap.
OFFSETS = {"frozen": -0.15, "finetuned": 0.15}
PERCENT_METRICS = ("accuracy", "sensitivity", "specificity")
#: The chart's metrics: column of the overview table -> column of the write-up table (None: not reported).
WRITEUP_COLUMNS = {"accuracy": "accuracy", "AUC": "auc", "sensitivity": None, "specificity": None}


def _scale(metric: str) -> float:
    return 100.0 if metric in PERCENT_METRICS else 1.0


def _fmt(value: float, metric: str) -> str:
    return f"{value * 100:.2f} %" if metric in PERCENT_METRICS else f"{value:.4f}"


def protocol_chart(table: pd.DataFrame, references: pd.DataFrame, metric: str = "accuracy",
                   basis: str = "at each protocol's validation-chosen threshold") -> go.Figure:
    """One recipe-coloured point with its 95 % CI per (protocol, recipe) of :func:`overview_table`, the
    write-up's figures in a fourth slot (diamonds, no interval: none was reported), and a "not evaluated
    yet" note wherever a report is missing. Percent metrics are drawn in percent."""
    scale = _scale(metric)
    fig = go.Figure()
    for variant in VARIANTS:
        rows = table[(table.variant == variant) & table.evaluated].set_index("protocol").reindex(PROTOCOLS)
        done = rows[metric].notna()
        x = [i + OFFSETS[variant] for i, ok in enumerate(done) if ok]
        values = (rows.loc[done, metric] * scale).tolist()  # plain lists: the spec stays readable JSON
        fig.add_trace(go.Scatter(
            x=x, y=values, mode="markers+text", name=f"{VARIANT_NAMES[variant]} (this project)",
            marker={"color": RECIPE_COLOURS[variant], "size": 11},
            text=[_fmt(v / scale, metric) for v in values], textposition="middle right",
            error_y={"type": "data", "symmetric": False,
                     "array": [hi * scale - v for hi, v in zip(rows.loc[done, f"{metric}_hi"], values)],
                     "arrayminus": [v - lo * scale for lo, v in zip(rows.loc[done, f"{metric}_lo"], values)]},
            customdata=[[PROTOCOL_NAMES[p], f"{t:.3f}", f"{n:.0f}"] for p, t, n in
                        zip(rows.index[done], rows.loc[done, "threshold"], rows.loc[done, "test_films"])],
            hovertemplate=f"%{{customdata[0]}}, {VARIANT_NAMES[variant]}<br>{metric} %{{y:.4g}}<br>"
                          "threshold %{customdata[1]}, %{customdata[2]} test films<extra></extra>"))
        for i, protocol in enumerate(PROTOCOLS):
            if not done[protocol]:
                fig.add_annotation(x=i + OFFSETS[variant], y=0.04, yref="paper", text="not evaluated yet",
                                   showarrow=False, textangle=-90, yanchor="bottom",
                                   font={"color": RECIPE_COLOURS[variant], "size": 11})
    column = WRITEUP_COLUMNS.get(metric)
    if column is not None:
        for ref in references.itertuples():
            value = getattr(ref, column)
            if value is None or math.isnan(value):
                continue
            fig.add_trace(go.Scatter(
                x=[len(PROTOCOLS) + OFFSETS[ref.variant]], y=[value * scale], mode="markers+text",
                name=f"{VARIANT_NAMES[ref.variant]} (write-up)", text=[_fmt(value, metric)],
                textposition="middle right",
                marker={"color": RECIPE_COLOURS[ref.variant], "size": 13, "symbol": "diamond",
                        "line": {"color": "black", "width": 1}},
                hovertemplate=f"reference write-up, {ref.model}<br>{metric} %{{y:.4g}}<br>"
                              f"{ref.test_films} test films, threshold not reported<extra></extra>"))
    else:
        fig.add_annotation(x=len(PROTOCOLS), y=0.04, yref="paper", text=f"write-up: no {metric} reported",
                           showarrow=False)
    ticks = [PROTOCOL_NAMES[p] for p in PROTOCOLS] + [WRITEUP_LABEL]
    fig.update_layout(
        title=f"{metric.capitalize()} by protocol, {basis} (95 % CI, patients resampled)",
        xaxis={"tickvals": list(range(len(ticks))), "ticktext": ticks, "range": [-0.6, len(ticks) - 0.3],
               "zeroline": False},
        yaxis={"title": f"test {metric}" + (" (%)" if scale == 100 else "")},
        legend={"orientation": "h", "y": -0.25}, margin={"t": 60, "b": 110}, height=480,
        plot_bgcolor="white")
    fig.update_yaxes(gridcolor="#e5e5e5")
    return fig


# ---------------------------------------------------------------- the pre-registered site-adaptation study
ADAPTATION_METHODS = {"em": "EM prior shift", "adabn": "anchored AdaBN", "coral": "CORAL"}
#: Issue 22's aim as the pre-registration states it (a target, not a result): pooled accuracy and AUC.
AIM_ACCURACY, AIM_AUC = 0.946, 0.99


def _interval(block: dict, key: str, percent: bool) -> str:
    low, high = (block.get("ci95") or {}).get(key) or (None, None)
    if low is None:
        return "-"
    return f"[{low:.1%}, {high:.1%}]" if percent else f"[{low:.3f}, {high:.3f}]"


def adaptation_table(root, shipped: dict | None = None) -> tuple[pd.DataFrame, dict | None]:
    """The study's four rows (unadapted, then each method with a ``root/<method>/metrics.json``), as shown: pooled
    figures at the shipped threshold with 95 % intervals, the per-fold balanced-accuracy change, the shipping-rule
    verdict and the aim. ``shipped``: the shipped model's own report, whose intervals the unadapted row takes when
    it is the same model, films and threshold. Also the first report read (protocol, threshold, data), or None."""
    from pathlib import Path

    reports = {m: json.loads(p.read_text()) for m in ADAPTATION_METHODS
               if (p := Path(root) / m / "metrics.json").is_file()}
    if not reports:
        return pd.DataFrame(), None
    first = next(iter(reports.values()))
    base = dict(first["unadapted_at_threshold"])
    if shipped and shipped.get("model_sha256") == first["model_sha256"] and \
            shipped["at_threshold"]["threshold"] == first["threshold"] and shipped["at_threshold"]["n"] == base["n"]:
        base["ci95"] = shipped["at_threshold"].get("ci95")

    def row(name: str, block: dict, folds: str, verdict: str) -> dict:
        aim = block["accuracy"] >= AIM_ACCURACY and block["auc"] >= AIM_AUC
        return {"method": name, "accuracy": f"{block['accuracy']:.1%}",
                "accuracy 95% CI": _interval(block, "accuracy", True), "AUC": f"{block['auc']:.3f}",
                "AUC 95% CI": _interval(block, "auc", False), "sensitivity": f"{block['sensitivity']:.1%}",
                "specificity": f"{block['specificity']:.1%}", "balanced accuracy": f"{block['balanced_accuracy']:.1%}",
                "balanced accuracy change, fold 1 / fold 2": folds, "shipping rule": verdict,
                f"aim ({AIM_ACCURACY:.1%}, AUC {AIM_AUC})": "met" if aim else "not met"}

    rows = [row("unadapted (shipped)", base, "-", "-")]
    for method, report in reports.items():
        gains = " / ".join(f"{fold['balanced_accuracy_gain'] * 100:+.2f}" for fold in report["folds"]) + " points"
        rows.append(row(ADAPTATION_METHODS[method], report["at_threshold"], gains,
                        "met: opt-in site action" if report["passes_shipping_rule"] else "not met"))
    return pd.DataFrame(rows), first

"""Altair (Vega-Lite) charts of the model pages, pure: data in, chart out (no Streamlit).

Every chart's title carries its provenance underneath (data, model, threshold), and models are
told apart by colour (Okabe-Ito, safe for the common colour-vision deficiencies) and by a second
cue: the line's dash, the marker's shape, and for bars a lighter fill with a dashed outline
(Vega-Lite has no fill patterns).
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from pneumo_core.evaluation import reports
from ui import chart_base
from ui.chart_base import OKABE_ITO, series_channels, unit_scale

MODEL_COLOURS = {"finetuned": OKABE_ITO["blue"], "frozen": OKABE_ITO["orange"]}
SOLID, DASHED, DOTTED = [1, 0], [7, 4], [2, 3]  # Vega-Lite strokeDash patterns
MODEL_DASH = {"finetuned": SOLID, "frozen": DASHED}  # a second cue besides colour
MODEL_SHAPE = {"finetuned": "circle", "frozen": "diamond"}
BAR_STYLE = {"finetuned": (1.0, SOLID), "frozen": (0.45, [4, 2])}  # bars: fill opacity, outline dash
#: Panels side by side keep their own sizes (Vega-Lite cannot fit a concatenation to the page's width), small
#: enough for two beside each other in the page (history) or in an expander (reliability) at 1024 px.
PANELS = alt.AutoSizeParams(type="pad")
PANEL_SIDE = 210
ROC_HEIGHT = 640  # px, the whole ROC chart: title, a square plot at most this tall less the rest, legends
#: Equal units on both axes (an ROC's geometry): the plot is a square as large as the column allows, at the
#: bottom-left of its view; Vega-Lite has no aspect ratio, so the scales' pixel ranges make it square.
SQUARE_X = alt.Scale(domain=[-0.01, 1.01], nice=False, range=[0, {"expr": "min(width, height)"}])
SQUARE_Y = alt.Scale(domain=[-0.01, 1.01], nice=False,
                     range=[{"expr": "height"}, {"expr": "height - min(width, height)"}])
INSIDE = {"fillColor": "white", "strokeColor": "#bbbbbb", "padding": 6, "cornerRadius": 3}  # a legend on the plot
LEGEND_BELOW = {"orient": "bottom", "direction": "vertical", "labelLimit": 0, "titleLimit": 0}  # half-width safe


def model_colour(variant: str) -> str:
    """The colour a model is drawn in on every chart."""
    return MODEL_COLOURS.get(variant, OKABE_ITO["black"])


def _markers_line(points: dict) -> str:
    """Which threshold each model's marker shows (``points``: variant -> (threshold, metrics))."""
    return "markers = current thresholds: " + ", ".join(f"{reports.short_name(v)} {t:.3f}"
                                                        for v, (t, _) in points.items())


def _marker_name(variant: str, threshold: float) -> str:
    return f"{reports.short_name(variant)} at {threshold:.3f}"


def _threshold_markers(points: dict, x: str, y: str, x_title: str, y_title: str,
                       legend_orient: str = "bottom") -> alt.Chart:
    """Each model's current operating point, in its colour and shape with a black outline, in its own legend."""
    rows = pd.DataFrame([{"marker": _marker_name(v, t), "threshold": t, x: m[x], y: m[y]}
                         for v, (t, m) in points.items()], columns=["marker", "threshold", x, y])
    names = list(rows["marker"])
    legend = alt.Legend(title="current threshold", **{**LEGEND_BELOW, "orient": legend_orient},
                        **(INSIDE if legend_orient != "bottom" else {}))
    return alt.Chart(rows).mark_point(filled=True, size=190, opacity=1, stroke="black", strokeWidth=1.5).encode(
        x=f"{x}:Q", y=f"{y}:Q", **series_channels("marker", names, legend, color=[model_colour(v) for v in points],
                                                  shape=[MODEL_SHAPE.get(v, "circle") for v in points]),
        tooltip=[alt.Tooltip("marker:N", title="model"), alt.Tooltip("threshold:Q", format=".3f"),
                 alt.Tooltip(f"{y}:Q", title=y_title, format=".3f"),
                 alt.Tooltip(f"{x}:Q", title=x_title, format=".3f")])


def _diagonal(x: str, y: str, name: str, field: str, enc: dict) -> alt.Chart:
    """The y = x line (chance, perfect calibration): the series ``name`` of ``field``, in its colour and dash of
    ``enc`` (:func:`series_channels`); no tooltip."""
    line = pd.DataFrame({x: [0.0, 1.0], y: [0.0, 1.0], field: [name, name]})
    return alt.Chart(line).mark_line(strokeWidth=1.5).encode(
        x=f"{x}:Q", y=f"{y}:Q", color=enc["color"], strokeDash=enc["strokeDash"])


def _curves(curves: pd.DataFrame, styles: dict, diagonal: str | None, axes: tuple[str, str, str, str],
            legend_title: str, square: bool = False) -> alt.LayerChart:
    """The y = x line named ``diagonal`` (if any) and the lines of ``curves`` (a ``curve`` column names each,
    ``order`` keeps the path's order where x ties), one (colour, dash) per name in ``styles``, with a tooltip at
    every point (transparent points: a line alone answers for its first point only). ``axes``: x, y, titles;
    ``square``: equal units on both (ROC)."""
    x, y, x_title, y_title = axes
    if diagonal:
        styles = {diagonal: (OKABE_ITO["grey"], DOTTED), **styles}
    legend = alt.Legend(title=legend_title, symbolType="stroke", symbolStrokeWidth=2.5, symbolSize=500,
                        **LEGEND_BELOW)
    colours, dashes = zip(*styles.values()) if styles else ((), ())
    enc = series_channels("curve", styles, legend, color=colours, strokeDash=dashes)
    tooltip = [alt.Tooltip("curve:N", title="model"), alt.Tooltip(f"{x}:Q", title=x_title, format=".3f"),
               alt.Tooltip(f"{y}:Q", title=y_title, format=".3f")]
    if "threshold" in curves:
        tooltip.append(alt.Tooltip("threshold:Q", format=".3f"))
    lines = alt.Chart(curves).mark_line(strokeWidth=2.5, point="transparent").encode(
        x=alt.X(f"{x}:Q", title=x_title, scale=SQUARE_X if square else unit_scale(),
                axis=alt.Axis(tickCount=10, grid=not square)),
        y=alt.Y(f"{y}:Q", title=y_title, scale=SQUARE_Y if square else unit_scale(), axis=alt.Axis(tickCount=10)),
        order="order:Q", **enc, tooltip=tooltip)
    under = ([_square_grid(x_title, y_title)] if square else []) + (
        [_diagonal(x, y, diagonal, "curve", enc)] if diagonal else [])
    return alt.layer(*under, lines)


def _square_grid(x_title: str, y_title: str) -> alt.Chart:
    """The vertical grid lines of a square plot, drawn as data: the axis's own would run the view's full height."""
    lines = pd.DataFrame({"grid_x": np.linspace(0, 1, 11), "grid_from": -0.01, "grid_to": 1.01})
    return alt.Chart(lines).mark_rule(color="#dddddd", strokeWidth=1).encode(
        x=alt.X("grid_x:Q", title=x_title), y=alt.Y("grid_from:Q", title=y_title), y2="grid_to:Q")


def metrics_bar_figure(table: pd.DataFrame, basis: str, data_caption: str) -> alt.LayerChart:
    """Grouped bars of each model's test metrics with their 95% CIs (``table``: reports.metrics_table). The frozen
    model's bars have a lighter fill and a dashed outline besides their colour."""
    variants = list(dict.fromkeys(table["variant"]))
    rows = table.assign(series=[_marker_name(v, t) for v, t in zip(table["variant"], table["threshold"])],
                        metric=table["metric"].map(reports.METRIC_SHORT))[
        ["series", "metric", "value", "ci_lo", "ci_hi"]]
    names = list(dict.fromkeys(rows["series"]))
    metrics = list(dict.fromkeys(rows["metric"]))
    legend = alt.Legend(title="model at its threshold", orient="bottom", direction="vertical", labelLimit=0)
    x = alt.X("metric:N", title="Metric", sort=metrics, axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("series:N", sort=names, scale=alt.Scale(domain=names, paddingInner=0.08))
    tooltip = [alt.Tooltip("series:N", title="model"), alt.Tooltip("metric:N"),
               alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("ci_lo:Q", title="95% CI from", format=".3f"),
               alt.Tooltip("ci_hi:Q", title="95% CI to", format=".3f")]
    bars = alt.Chart(rows).mark_bar(stroke=OKABE_ITO["black"], strokeWidth=1.2).encode(
        x=x, xOffset=offset,
        y=alt.Y("value:Q", title="Value (0-1)", scale=alt.Scale(domain=[0, 1.05], nice=False)),
        **series_channels("series", names, legend, color=[model_colour(v) for v in variants],
                          fillOpacity=[BAR_STYLE.get(v, BAR_STYLE["finetuned"])[0] for v in variants],
                          strokeDash=[BAR_STYLE.get(v, BAR_STYLE["finetuned"])[1] for v in variants]),
        tooltip=tooltip)
    whiskers = alt.Chart(rows).mark_errorbar(ticks=True, color="#222222", thickness=1.5).encode(
        x=x, xOffset=offset, y=alt.Y("ci_lo:Q", title="Value (0-1)"), y2="ci_hi:Q", tooltip=tooltip)
    return alt.layer(bars, whiskers).properties(
        title=chart_base.title("Test metrics, 95% CIs", data_caption, basis), height=480)


def history_figure(rep: reports.VariantReport) -> alt.HConcatChart:
    """Loss and AUC per epoch, training and validation, with the start of fine-tuning marked."""
    epochs = rep.history
    splits = {"training": ("", model_colour(rep.variant), SOLID, "circle"),
              "validation": ("val_", OKABE_ITO["black"], DOTTED, "square")}
    rows = pd.concat([pd.DataFrame({"epoch": epochs["step"], "phase": epochs["phase"], "split": split,
                                    "loss": epochs[f"{prefix}loss"], "auc": epochs[f"{prefix}auc"]})
                      for split, (prefix, *_) in splits.items()], ignore_index=True)
    x_title = "Epoch (head, then fine-tune)" if (epochs["phase"] == "fine-tune").any() else "Epoch (head training)"
    legend = alt.Legend(title=None, orient="bottom", direction="horizontal")
    _, colours, dashes, shapes = zip(*splits.values())
    enc = series_channels("split", splits, legend, color=colours, strokeDash=dashes, shape=shapes)
    fine_tune = epochs.loc[epochs["phase"] == "fine-tune", "step"]
    panels = []
    for metric, panel_title, y_title in (("loss", "Loss (binary cross-entropy)", "Loss"), ("auc", "ROC AUC", "AUC")):
        lines = alt.Chart(rows).mark_line(point=alt.OverlayMarkDef(size=30, filled=True)).encode(
            x=alt.X("epoch:Q", title=x_title, axis=alt.Axis(tickMinStep=1)),
            y=alt.Y(f"{metric}:Q", title=y_title, scale=alt.Scale(zero=False)), **enc,
            tooltip=[alt.Tooltip("split:N"), alt.Tooltip("epoch:Q"), alt.Tooltip("phase:N"),
                     alt.Tooltip(f"{metric}:Q", title=y_title, format=".4f")])
        layers = [lines]
        if len(fine_tune):
            start = pd.DataFrame({"epoch": [float(fine_tune.iloc[0]) - 0.5], "label": ["fine-tuning starts"]})
            rule = alt.Chart(start).encode(x="epoch:Q")
            layers.append(rule.mark_rule(color=OKABE_ITO["grey"], strokeDash=DASHED, strokeWidth=1.5))
            if metric == "loss":  # labelled once, where the curves leave the top free
                layers.append(rule.mark_text(align="right", baseline="top", dx=-4, y=4, color="#333333").encode(
                    text="label:N"))
        panels.append(alt.layer(*layers).properties(title=panel_title, width=PANEL_SIDE, height=220))
    data = rep.training.get("data", {})
    sub = (f"training {data.get('train_images', '?')} / validation {data.get('val_images', '?')} images "
           "(Kermany train folder, patient-grouped split)")
    return alt.hconcat(*panels, spacing=40).properties(title=chart_base.title(f"Training curves: {rep.name}", sub),
                                                       autosize=PANELS)


def roc_figure(reps: dict, points: dict) -> alt.LayerChart:
    """ROC curves of the models on one square chart; ``points``: variant -> (threshold, confusion dict)."""
    names = {v: f"{reports.short_name(v)} (AUC {reports.auc_of(rep):.3f})" for v, rep in reps.items()}
    curves = pd.concat([rep.roc[["fpr", "tpr", "threshold"]].assign(curve=names[v], order=np.arange(len(rep.roc)))
                        for v, rep in reps.items()], ignore_index=True) if reps else \
        pd.DataFrame(columns=["fpr", "tpr", "threshold", "curve", "order"])
    styles = {names[v]: (model_colour(v), MODEL_DASH.get(v, SOLID)) for v in reps}
    chart = alt.layer(_curves(curves, styles, "chance", ("fpr", "tpr", "1 - specificity (FPR)", "Sensitivity (TPR)"),
                              "ROC curve", square=True),
                      # inside, bottom right: an ROC plot leaves it empty, and below, a narrow chart had no room
                      _threshold_markers(points, "fpr", "tpr", "1 - specificity", "sensitivity", "bottom-right"))
    cap = next(iter(reps.values())).data_caption() if reps else ""
    return chart.resolve_scale(color="independent", shape="independent", strokeDash="independent").properties(
        title=chart_base.title("ROC curves on the test split", cap, _markers_line(points)), height=ROC_HEIGHT
    ).configure_view(stroke=None)  # a frame would outline the whole view, not the square plot


def confusion_figure(rep: reports.VariantReport, m: dict, threshold: float, height: int = 330) -> alt.LayerChart:
    """Counts and row rates (share of each true class) as a heatmap coloured by rate, true NORMAL on top."""
    cm = np.asarray(m["confusion_matrix"])
    rates = np.asarray(m["rates"])
    names = ["NORMAL", "PNEUMONIA"]
    cells = pd.DataFrame([{"true": names[i], "predicted": names[j], "count": int(cm[i][j]),
                           "rate": float(rates[i][j])} for i in range(2) for j in range(2)])
    tooltip = [alt.Tooltip("true:N", title="true"), alt.Tooltip("predicted:N", title="predicted"),
               alt.Tooltip("count:Q"), alt.Tooltip("rate:Q", title="share of the true class", format=".1%")]
    base = alt.Chart(cells).encode(
        x=alt.X("predicted:N", title="Model's label", sort=names, axis=alt.Axis(labelAngle=0, labelFontSize=11)),
        y=alt.Y("true:N", title="True label", sort=names, axis=alt.Axis(labelFontSize=11)), tooltip=tooltip)
    # No colour legend: each cell states its share, and the legend took a third of a narrow chart.
    heat = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color("rate:Q", scale=alt.Scale(domain=[0, 1], range=["#f4f8fb", OKABE_ITO["blue"]]), legend=None))
    ink = alt.condition("datum.rate > 0.55", alt.value("white"), alt.value("#1a1a1a"))
    count = base.mark_text(fontSize=15, fontWeight="bold", dy=-9).encode(text="count:Q", color=ink)
    share = base.mark_text(fontSize=13, dy=10).encode(text=alt.Text("rate:Q", format=".1%"), color=ink)
    return alt.layer(heat, count, share).properties(
        title=chart_base.title(f"Confusion matrix: {reports.short_name(rep.variant)}",
                               f"threshold {threshold:.3f}; test split, {rep.test_n} images", rep.name),
        height=height)  # the whole chart's height: Streamlit fits a single view into it


def pr_figure(reps: dict, curves: dict, points: dict) -> alt.LayerChart:
    """Precision-recall curves (``curves``: variant -> (curve, average precision)) with each
    model's current threshold marked (``points``: variant -> (threshold, metrics))."""
    names = {v: f"{reps[v].name} (AP {ap:.3f})" for v, (_, ap) in curves.items()}
    frames = [pr[[c for c in ("recall", "precision", "threshold") if c in pr]].assign(
        curve=names[v], order=np.arange(len(pr))) for v, (pr, _) in curves.items()]
    lines = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["recall", "precision", "curve", "order"])
    styles = {names[v]: (model_colour(v), MODEL_DASH.get(v, SOLID)) for v in curves}
    chart = alt.layer(_curves(lines, styles, None, ("recall", "precision", "Recall (sensitivity)", "Precision (PPV)"),
                              "PR curve"),
                      _threshold_markers(points, "recall", "precision", "recall", "precision"))
    cap = next(iter(reps.values())).data_caption() if reps else ""
    return chart.resolve_scale(color="independent", shape="independent", strokeDash="independent").properties(
        title=chart_base.title("Precision-recall curves", cap, _markers_line(points)), height=460)


#: score -> (its bins in calibration_figures, colour, dash, point shape); "stroke" draws the diagonal as a line
RELIABILITY = {"perfect calibration": (None, OKABE_ITO["grey"], DOTTED, "stroke"),
               "raw score": ("raw", OKABE_ITO["vermillion"], DASHED, "diamond"),
               "calibrated score": ("calibrated", OKABE_ITO["green"], SOLID, "circle")}


def reliability_panels(panels: list[tuple[str, dict]], title: str, *subs: str) -> alt.HConcatChart:
    """Reliability diagrams side by side, one panel per labelled set (``panels``: (panel title, figures of
    :func:`pneumo_core.site.calibration.calibration_figures`)), the raw and the calibrated score in each, the
    diagonal of perfect calibration, and each bin's film count in its tooltip."""
    legend = alt.Legend(title=None, orient="bottom", direction="horizontal", symbolStrokeWidth=2, labelLimit=0)
    _, colours, dashes, shapes = zip(*RELIABILITY.values())
    enc = series_channels("score", RELIABILITY, legend, color=colours, strokeDash=dashes, shape=shapes)
    x = alt.X("mean_p:Q", title="Mean predicted P(pneumonia)", scale=alt.Scale(domain=[0, 1], nice=False))
    charts = []
    for col, (panel_title, figures) in enumerate(panels):
        bins = pd.DataFrame([{"score": name, "mean_p": b["mean_p"], "observed": b["observed"], "n": int(b["n"]),
                              "low": b["low"], "high": b["high"]}
                             for name, (which, *_) in RELIABILITY.items() if which
                             for b in figures[f"reliability_{which}"]],
                            columns=["score", "mean_p", "observed", "n", "low", "high"])
        y = alt.Y("observed:Q", title="Observed fraction with pneumonia" if col == 0 else None,
                  scale=alt.Scale(domain=[0, 1.02], nice=False))
        lines = alt.Chart(bins).mark_line(point=alt.OverlayMarkDef(size=60, filled=True), strokeWidth=2).encode(
            x=x, y=y, **enc,
            tooltip=[alt.Tooltip("score:N"), alt.Tooltip("mean_p:Q", title="mean P", format=".2f"),
                     alt.Tooltip("observed:Q", format=".2f"), alt.Tooltip("n:Q", title="films in the bin"),
                     alt.Tooltip("low:Q", title="bin from", format=".1f"),
                     alt.Tooltip("high:Q", title="bin to", format=".1f")])
        diagonal = _diagonal("mean_p", "observed", "perfect calibration", "score", enc)
        charts.append(alt.layer(diagonal, lines).properties(title=panel_title, width=PANEL_SIDE,
                                                            height=PANEL_SIDE))
    return alt.hconcat(*charts, spacing=30).properties(title=chart_base.title(title, *subs), autosize=PANELS)


def calibration_figure(rep: reports.VariantReport, calibration) -> alt.HConcatChart:
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

"""Altair (Vega-Lite) charts for the "Why results differ" page (app_pages/protocols.py): pure builders over the
tables of ``pneumo_core.evaluation.protocol_results``; no Streamlit here."""
from __future__ import annotations

import json
import math

import altair as alt
import pandas as pd

from pneumo_core.datasets.protocols import PROTOCOLS
from pneumo_core.evaluation.protocol_results import PROTOCOL_NAMES, VARIANT_NAMES, VARIANTS
from ui.chart_base import OKABE_ITO, series_channels, title

RECIPE_COLOURS = {"frozen": OKABE_ITO["orange"], "finetuned": OKABE_ITO["blue"]}
#: The second cue besides colour: this project's points by recipe, the write-up's in shapes of their own.
SHAPES = {("frozen", "this project"): "square", ("finetuned", "this project"): "circle",
          ("frozen", "write-up"): "diamond", ("finetuned", "write-up"): "triangle-up"}
#: The write-up's slot on the x axis, drawn on two lines.
WRITEUP_LINES = ("reference write-up", "(image-level random split)")
WRITEUP_LABEL = " ".join(WRITEUP_LINES)
PERCENT_METRICS = ("accuracy", "sensitivity", "specificity")
#: The chart's metrics: column of the overview table -> column of the write-up table (None: not reported).
WRITEUP_COLUMNS = {"accuracy": "accuracy", "AUC": "auc", "sensitivity": None, "specificity": None}
HEIGHT = 420


def _scale(metric: str) -> float:
    return 100.0 if metric in PERCENT_METRICS else 1.0


def _fmt(value: float, metric: str) -> str:
    return f"{value * 100:.2f} %" if metric in PERCENT_METRICS else f"{value:.4f}"


def protocol_points(table: pd.DataFrame, references: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chart's data: one row per drawn point (slot, recipe, series, value with its 95 % CI ``lo``-``hi``, in
    percent for percent metrics; the write-up's without CI), and one "not evaluated yet" note per missing run."""
    scale, points, notes = _scale(metric), [], []
    for variant in VARIANTS:
        rows = table[(table.variant == variant) & table.evaluated].set_index("protocol").reindex(PROTOCOLS)
        for protocol, row in rows.iterrows():
            if pd.isna(row[metric]):
                notes.append({"slot": PROTOCOL_NAMES[protocol], "recipe": VARIANT_NAMES[variant],
                              "series": f"{VARIANT_NAMES[variant]} (this project)", "note": "not evaluated yet"})
                continue
            points.append({"slot": PROTOCOL_NAMES[protocol], "recipe": VARIANT_NAMES[variant],
                           "series": f"{VARIANT_NAMES[variant]} (this project)", "source": "this project",
                           "value": row[metric] * scale, "lo": row[f"{metric}_lo"] * scale,
                           "hi": row[f"{metric}_hi"] * scale, "label": _fmt(row[metric], metric),
                           "interval": f"{_fmt(row[f'{metric}_lo'], metric)} to {_fmt(row[f'{metric}_hi'], metric)}",
                           "threshold": f"{row.threshold:.3f}", "test_films": int(row.test_films)})
    column = WRITEUP_COLUMNS.get(metric)
    for ref in references.itertuples() if column is not None else ():
        value = getattr(ref, column)
        if value is None or math.isnan(value):
            continue
        points.append({"slot": WRITEUP_LABEL, "recipe": VARIANT_NAMES[ref.variant],
                       "series": f"{VARIANT_NAMES[ref.variant]} (write-up)",
                       "source": f"reference write-up, {ref.model}",
                       "value": value * scale, "lo": None, "hi": None, "label": _fmt(value, metric),
                       "interval": "not reported",
                       "threshold": "not reported", "test_films": int(ref.test_films)})
    if column is None:
        notes.append({"slot": WRITEUP_LABEL, "recipe": None, "series": None, "note": f"write-up: no {metric} reported"})
    columns = ["slot", "recipe", "series", "source", "value", "lo", "hi", "label", "interval", "threshold",
               "test_films"]
    return pd.DataFrame(points, columns=columns), pd.DataFrame(notes, columns=["slot", "recipe", "series", "note"])


def protocol_chart(table: pd.DataFrame, references: pd.DataFrame, metric: str = "accuracy",
                   basis: str = "at each protocol's validation-chosen threshold") -> alt.LayerChart:
    """One recipe-coloured point with its 95 % CI per (protocol, recipe) of :func:`overview_table`, the
    write-up's figures in a fourth slot (their own shapes, no interval: none was reported), and a "not evaluated
    yet" note wherever a report is missing. Percent metrics are drawn in percent."""
    points, notes = protocol_points(table, references, metric)
    slots = [PROTOCOL_NAMES[p] for p in PROTOCOLS] + [WRITEUP_LABEL]
    recipes = [VARIANT_NAMES[v] for v in VARIANTS]
    series = [(f"{VARIANT_NAMES[v]} ({source})", RECIPE_COLOURS[v], SHAPES[v, source])
              for source in ("this project", "write-up") for v in VARIANTS]
    legend = alt.Legend(title=None, orient="bottom", columns=2, labelLimit=260, symbolStrokeColor="black")
    x = alt.X("slot:N", title=None, sort=slots, scale=alt.Scale(domain=slots),
              axis=alt.Axis(labelAngle=0, labelLimit=220, labelFontSize=12,
                            labelExpr=f"datum.label == {json.dumps(WRITEUP_LABEL)} ? {json.dumps(WRITEUP_LINES)} "
                                      ": datum.label"))
    offset = alt.XOffset("recipe:N", scale=alt.Scale(domain=recipes, paddingOuter=0.5))
    y_title = f"test {metric}" + (" (%)" if _scale(metric) == 100 else "")
    y = alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False), axis=alt.Axis(gridColor="#e5e5e5"))
    labels, colours, shapes = zip(*series)
    enc = series_channels("series", labels, legend, color=colours, shape=shapes)
    colour, shape = enc["color"], enc["shape"]
    tooltip = [alt.Tooltip("slot:N", title="protocol"), alt.Tooltip("source:N", title="figures of"),
               alt.Tooltip("recipe:N"), alt.Tooltip("value:Q", title=metric, format=".4g"),
               alt.Tooltip("interval:N", title="95 % CI"),
               alt.Tooltip("threshold:N"), alt.Tooltip("test_films:Q", title="test films")]
    layers = []
    if points.lo.notna().any():
        layers.append(alt.Chart(points[points.lo.notna()]).mark_rule(strokeWidth=2).encode(
            x=x, xOffset=offset, y=alt.Y("lo:Q", title=y_title), y2="hi:Q", color=colour, tooltip=tooltip))
    if len(points):
        layers.append(alt.Chart(points).mark_point(filled=True, size=130, opacity=1, stroke="black",
                                                   strokeWidth=0.8).encode(
            x=x, xOffset=offset, y=y, color=colour, shape=shape, tooltip=tooltip))
    for variant, side in zip(VARIANTS, ("right", "left")):  # each value on its own outer side: close ones stay apart
        labels = points[points.recipe == VARIANT_NAMES[variant]]
        if len(labels):
            layers.append(alt.Chart(labels).mark_text(align=side, dx=9 if side == "left" else -9, fontSize=11,
                                                      color="#222222").encode(
                x=x, xOffset=offset, y=y, text="label:N", tooltip=tooltip))
    if len(notes):  # at the foot of the slot, upright (a pending run) or across (the write-up's gap)
        note = alt.Chart(notes).encode(x=x, y=alt.value({"expr": "height - 6"}), text="note:N")
        pending = notes[notes.recipe.notna()]
        if len(pending):
            layers.append(note.mark_text(angle=270, align="left", fontSize=11).encode(
                xOffset=offset, color=colour).transform_filter("isValid(datum.recipe)"))
        if len(pending) < len(notes):
            layers.append(note.mark_text(fontSize=11, baseline="bottom", color="#444444").transform_filter(
                "!isValid(datum.recipe)"))
    return alt.layer(*layers).properties(
        title=title(f"{metric[0].upper()}{metric[1:]} by protocol, {basis} (95 % CI, patients resampled)",
                    "data: each protocol's own test part (test films on hover); the two recipes retrained under "
                    "each protocol; the write-up's figures as it reported them"),
        height=HEIGHT)


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

"""Altair (Vega-Lite) charts of the reader quiz: one reader on the model's ROC curve, and the whole class.

Every chart names the model, the films and the threshold in its title. Colours are Okabe-Ito
(colour-vision safe) and each series has a second cue (dash or point shape) besides colour, in one legend.
Nicknames are data: Vega-Lite draws them as plain text, as typed.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import pandas as pd

from pneumo_core.evaluation.reports import display_name, load_report
from ui.chart_base import LINE, OKABE_ITO, STAR, X_MARK, series_channels, title, unit_scale

MODEL_COLOUR = OKABE_ITO["blue"]
TEST_COLOUR = OKABE_ITO["grey"]
READER_COLOUR = OKABE_ITO["vermillion"]
CLASS_COLOUR = OKABE_ITO["green"]
CHANCE_COLOUR = "#cccccc"
SIDE = 440  # px, width and height of the plot: ROC axes are square (drawn at this size, not stretched)
FPR_TITLE = "1 - specificity (false-positive rate)"
TPR_TITLE = "sensitivity (true-positive rate)"
SOLID, DASH, DOT, DASHDOT = [1, 0], [7, 4], [2, 3], [8, 3, 2, 3]
LINE_SYMBOL = 400  # legend symbol size of a line series: a 20 px stroke, long enough to show its dash


@dataclass(frozen=True)
class Series:
    """One legend entry: label, colour, dash, shape (a line series: ``LINE``) and point size (its legend symbol's)."""
    label: str
    colour: str
    dash: list[int]
    shape: str = LINE
    size: int = LINE_SYMBOL


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _points(series: Series, fpr, tpr, **columns) -> pd.DataFrame:
    return pd.DataFrame({"series": series.label, "fpr": list(fpr), "tpr": list(tpr), **columns})


def _rate_tooltips(*extra: alt.Tooltip) -> list[alt.Tooltip]:
    return [*extra, alt.Tooltip("series:N", title="series"),
            alt.Tooltip("tpr:Q", title="sensitivity", format=".3f"),
            alt.Tooltip("fpr:Q", title="1 - specificity", format=".3f")]


def _legend_encodings(shown: list[Series]) -> dict:
    """Colour, dash, shape and size of every series on one shared domain: Vega-Lite then draws one legend whose
    symbols carry every cue, inside the plot's lower right (where no ROC curve goes)."""
    legend = alt.Legend(title=None, orient="bottom-right", fillColor="rgba(255,255,255,0.85)", strokeColor="#dddddd",
                        padding=6, labelLimit=SIDE - 60, labelFontSize=11, symbolStrokeWidth=2)
    return series_channels("series", [s.label for s in shown], legend, color=[s.colour for s in shown],
                           strokeDash=[s.dash for s in shown], shape=[s.shape for s in shown],
                           size=[s.size for s in shown])


def _axes(x: str = "fpr", y: str = "tpr") -> dict:
    return {"x": alt.X(f"{x}:Q", title=FPR_TITLE, scale=unit_scale(0.02)),
            "y": alt.Y(f"{y}:Q", title=TPR_TITLE, scale=unit_scale(0.02))}


def _line(data: pd.DataFrame, enc: dict, width: float = 2, step: bool = False, tooltip: bool = True) -> alt.Chart:
    """A curve; ``step``: drawn as steps (an ROC curve of scores). Transparent points on its vertices carry the
    tooltips (a line alone has one tooltip for the whole curve)."""
    mark = alt.Chart(data).mark_line(strokeWidth=width, interpolate="step-after" if step else "linear",
                                     point="transparent" if tooltip else False)
    return mark.encode(**_axes(), color=enc["color"], strokeDash=enc["strokeDash"],
                       **({"tooltip": _rate_tooltips()} if tooltip else {}))


def _point(data: pd.DataFrame, enc: dict, outline: bool = False,
           tooltip: list[alt.Tooltip] | None = None) -> alt.Chart:
    style = {"stroke": "black", "strokeWidth": 1} if outline else {"strokeWidth": 0}
    mark = alt.Chart(data).mark_point(filled=True, opacity=1, **style)
    return mark.encode(**_axes(), color=enc["color"], shape=enc["shape"], size=enc["size"],
                       tooltip=tooltip or _rate_tooltips())


def _chance(data: pd.DataFrame, enc: dict) -> alt.Chart:
    return _line(data, enc, width=1, tooltip=False)


def _model_curve(data: pd.DataFrame, enc: dict) -> alt.Chart:
    return _line(data, enc, width=3, step=True)


def _reader_curve(data: pd.DataFrame, enc: dict) -> alt.LayerChart:
    """The reader's rating ROC: a dash-dot line with small squares (its legend symbol: the line)."""
    squares = alt.Chart(data).mark_point(filled=True, opacity=1, shape="square", size=40, strokeWidth=0)
    return alt.layer(_line(data, enc), squares.encode(**_axes(), color=enc["color"], tooltip=_rate_tooltips()))


def _outlined(data: pd.DataFrame, enc: dict) -> alt.Chart:
    return _point(data, enc, outline=True)


def _readers(data: pd.DataFrame, enc: dict) -> alt.LayerChart:
    """Every reader's point, labelled with their nickname; readers on the same point share one label, a name a
    line (a nickname holds no line break: the store refuses control characters)."""
    tips = _rate_tooltips(alt.Tooltip("nickname:N", title="reader"))
    labels = data.groupby(["fpr", "tpr"], sort=False, as_index=False)["nickname"].agg("\n".join)
    names = alt.Chart(labels.rename(columns={"nickname": "label"})).mark_text(
        align="left", baseline="bottom", dx=7, dy=-4, fontSize=11, lineBreak="\n", color=READER_COLOUR,
    ).encode(**_axes(), text="label:N")
    return alt.layer(_point(data, enc, tooltip=tips), names)


def _class_mean(data: pd.DataFrame, enc: dict) -> alt.LayerChart:
    """The class mean with one standard deviation each way as error bars."""
    tips = _rate_tooltips(alt.Tooltip("sd_sensitivity:Q", title="SD of sensitivity", format=".3f"),
                          alt.Tooltip("sd_specificity:Q", title="SD of specificity", format=".3f"))
    bar = alt.Chart(data).mark_rule(color=CLASS_COLOUR, strokeWidth=2, clip=True)
    return alt.layer(bar.encode(**_axes(x="fpr_low"), x2="fpr_high:Q", tooltip=tips),
                     bar.encode(**_axes(y="tpr_low"), y2="tpr_high:Q", tooltip=tips),
                     _point(data, enc, outline=True, tooltip=tips))


Part = tuple[Series, pd.DataFrame, Callable[[pd.DataFrame, dict], alt.TopLevelMixin]]


def _roc_chart(parts: list[Part], chart_title: alt.TitleParams) -> alt.LayerChart:
    """The parts (series, its data, how it is drawn) on square 0-1 axes with one legend, under ``chart_title``."""
    enc = _legend_encodings([s for s, _, _ in parts])
    return alt.layer(*(draw(data, enc) for _, data, draw in parts)).properties(
        title=chart_title, width=SIDE, height=SIDE, autosize=alt.AutoSizeParams(type="pad"))


def _chance_part() -> Part:
    s = Series("chance", CHANCE_COLOUR, DOT)
    return s, _points(s, [0, 1], [0, 1]), _chance


def test_split_caption(variant: str) -> str:
    """Which data the full-test-split curve comes from (the shipped report)."""
    report = load_report(variant)
    return report.data_caption() if report.test_n else "the official test split"


def reader_figure(chart: dict, variant: str, threshold: float | None, films_text: str) -> alt.LayerChart:
    """The reader's result chart (``chart``: :func:`reader_study.reader_chart`): the model's ROC on
    the quiz films and on the full test split, the model's and the reader's operating points, and
    the reader's ROC from their confidence ratings."""
    parts = [_chance_part()]
    test = chart["test_roc"]
    if test is not None and len(test):
        s = Series("model, full test split", TEST_COLOUR, DASH)
        parts.append((s, _points(s, test["fpr"], test["tpr"]), _line))
    roc = chart["model_roc"]
    if len(roc):
        s = Series(f"model on these films (AUC {_num(chart['model_auc'])})", MODEL_COLOUR, SOLID)
        parts.append((s, _points(s, roc["fpr"], roc["tpr"]), _model_curve))
    point = chart["model_point"]
    if not math.isnan(point["fpr"]):
        s = Series(f"model at threshold {_num(threshold)}", MODEL_COLOUR, SOLID, "circle", 150)
        parts.append((s, _points(s, [point["fpr"]], [point["tpr"]]), _point))
    mine = chart["reader_roc"]
    if len(mine):
        s = Series(f"you, from your confidence (AUC {_num(chart['reader_auc'])})", READER_COLOUR, DASHDOT)
        parts.append((s, _points(s, mine["fpr"], mine["tpr"]), _reader_curve))
    you = chart["reader_point"]
    if not (math.isnan(you["fpr"]) or math.isnan(you["tpr"])):
        s = Series(f"you: sensitivity {_num(you['tpr'])}, specificity {_num(1 - you['fpr'])}", READER_COLOUR,
                   SOLID, STAR, 420)
        parts.append((s, _points(s, [you["fpr"]], [you["tpr"]]), _outlined))
    return _roc_chart(parts, title(f"Your reading against the {display_name(variant)}",
                                   f"{films_text}; model threshold {_num(threshold)} (chosen on validation)",
                                   f"grey dashed: the same model on the {test_split_caption(variant)}"))


def class_figure(model: dict, table: pd.DataFrame, summary: dict, variant: str, threshold: float | None,
                 films_text: str) -> alt.LayerChart:
    """Every reader's operating point on the model's ROC curve for the quiz films, labelled with their
    nickname, with the class mean and its spread (one standard deviation each way). ``model``:
    :func:`reader_study.model_on_films`; ``table``: :func:`reader_study.reader_table`; ``summary``:
    :func:`reader_study.class_summary`."""
    parts = [_chance_part()]
    if len(model["roc"]):
        s = Series(f"model on these films (AUC {_num(model['auc'])})", MODEL_COLOUR, SOLID)
        parts.append((s, _points(s, model["roc"]["fpr"], model["roc"]["tpr"]), _model_curve))
    if not math.isnan(model["fpr"]):
        s = Series(f"model at threshold {_num(threshold)}", MODEL_COLOUR, SOLID, "circle", 150)
        parts.append((s, _points(s, [model["fpr"]], [model["tpr"]]), _point))
    shown = table.dropna(subset=["fpr", "tpr"])
    if len(shown):
        s = Series(f"readers ({len(shown)})", READER_COLOUR, SOLID, X_MARK, 110)
        parts.append((s, _points(s, shown["fpr"], shown["tpr"], nickname=list(shown["nickname"])), _readers))
    sens, spec = summary["sensitivity"], summary["specificity"]
    if not (math.isnan(sens["mean"]) or math.isnan(spec["mean"])):
        s = Series(f"class mean ± 1 SD (sensitivity {_num(sens['mean'])}, specificity {_num(spec['mean'])})",
                   CLASS_COLOUR, SOLID, "diamond", 260)
        sd_tpr, sd_fpr = (0.0 if math.isnan(v) else v for v in (sens["sd"], spec["sd"]))
        x, y = 1 - spec["mean"], sens["mean"]
        parts.append((s, _points(s, [x], [y], sd_sensitivity=[sd_tpr], sd_specificity=[sd_fpr],
                                 fpr_low=[x - sd_fpr], fpr_high=[x + sd_fpr], tpr_low=[y - sd_tpr],
                                 tpr_high=[y + sd_tpr]), _class_mean))
    return _roc_chart(parts, title(f"The class against the {display_name(variant)}",
                                   f"{films_text}; model threshold {_num(threshold)} (chosen on validation)"))

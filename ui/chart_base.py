"""What every chart of the dashboard shares, pure (Altair/Vega-Lite specs, no Streamlit): the colours, the title
with its provenance underneath, the 0-1 axes, and the series' cues (colour, dash, shape...) in one legend.

Vega-Lite draws titles, labels and legends as plain text (no HTML or Markdown is read in them), so user text
(nicknames, file names) needs no escaping here.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence

import altair as alt

#: Okabe-Ito: safe for the common colour-vision deficiencies; every series has a second cue (dash, shape).
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000", "grey": "#999999"}
#: Vega-Lite does not wrap titles, and Streamlit cuts a line wider than the chart with "…": lines this short fit a
#: half-width chart on a 1024 px screen.
SUBTITLE_CHARS = 42
#: Point shapes Vega lacks, as SVG paths in the unit square that Vega scales by the point's size.
STAR = ("M0,-1L0.225,-0.309L0.951,-0.309L0.363,0.118L0.588,0.809L0,0.382L-0.588,0.809L-0.363,0.118"
        "L-0.951,-0.309L-0.225,-0.309Z")
X_MARK = ("M-0.778,-0.990L0,-0.212L0.778,-0.990L0.990,-0.778L0.212,0L0.990,0.778L0.778,0.990L0,0.212"
          "L-0.778,0.990L-0.990,0.778L-0.212,0L-0.990,-0.778Z")
#: The legend symbol of a line series: a short line, dashed as the series.
LINE = "stroke"


def title(text: str, *subs: str) -> alt.TitleParams:
    """A chart title, left-aligned, with its provenance (data, model, threshold) as subtitle lines underneath,
    wrapped by hand; a ``\\n`` in a sub starts a new line."""
    lines = [line for sub in subs for part in str(sub).split("\n") for line in textwrap.wrap(part, SUBTITLE_CHARS)]
    return alt.TitleParams(text=str(text), subtitle=lines or None, anchor="start", fontSize=15,
                           subtitleFontSize=12, subtitleColor="#333333", offset=10)


def unit_scale(padding: float = 0.01) -> alt.Scale:
    """A 0-1 axis with a little room at both ends (rates, probabilities), never widened by the data."""
    return alt.Scale(domain=[-padding, 1 + padding], nice=False, clamp=False)


#: Channels that carry a quantity (a size, an opacity): their series field is ordinal on an ordinal scale, one value a
#: series (Vega-Lite warns on an unsorted nominal field there, and its default scale would be a ramp).
QUANTITY_CHANNELS = frozenset({"size", "opacity", "fillOpacity", "strokeOpacity", "strokeWidth"})


def series_channels(field: str, labels: Sequence[str], legend=alt.Undefined, **cues: Sequence) -> dict:
    """The encodings of the series named in ``field``: each keyword is a Vega-Lite channel (color, strokeDash,
    shape, size, fillOpacity, ...) whose list gives each of ``labels`` its value, in order. All share the one domain
    ``labels``, so Vega-Lite draws a single legend whose symbols carry every cue."""
    labels = list(labels)
    channels = {}
    for channel, values in cues.items():
        if len(values) != len(labels):
            raise ValueError(f"{channel}: {len(values)} values for {len(labels)} series")
        quantity = channel in QUANTITY_CHANNELS
        scale = alt.Scale(type="ordinal" if quantity else alt.Undefined, domain=labels, range=list(values))
        encoding = getattr(alt, channel[0].upper() + channel[1:])
        channels[channel] = encoding(f"{field}:{'O' if quantity else 'N'}", scale=scale, legend=legend)
    return channels

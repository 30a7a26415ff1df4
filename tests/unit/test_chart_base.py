"""The series legend helper every chart uses: one domain for all cues (so Vega-Lite draws one legend), quantities
(size, opacity) as ordinal fields on ordinal scales (one value a series, not a ramp)."""
from __future__ import annotations

import altair as alt
import pandas as pd
import pytest

from ui.chart_base import OKABE_ITO, series_channels

LABELS = ["model", "reader <b>Zoë</b>", "class mean"]  # user text stays as typed


def _spec() -> dict:
    data = pd.DataFrame({"series": LABELS, "x": [0.1, 0.2, 0.3], "y": [0.9, 0.8, 0.7]})
    enc = series_channels("series", LABELS, alt.Legend(title=None), color=[OKABE_ITO["blue"], OKABE_ITO["orange"],
                                                                          OKABE_ITO["green"]],
                          strokeDash=[[1, 0], [7, 4], [2, 3]], shape=["circle", "diamond", "square"],
                          size=[150, 420, 260])
    return alt.Chart(data).mark_point().encode(x="x:Q", y="y:Q", **enc).to_dict()  # validated against Vega-Lite


def test_every_cue_maps_each_series_to_its_value_on_one_shared_domain():
    encoding = _spec()["encoding"]
    assert {c: encoding[c]["scale"]["range"] for c in ("color", "strokeDash", "shape", "size")} == {
        "color": ["#0072B2", "#E69F00", "#009E73"], "strokeDash": [[1, 0], [7, 4], [2, 3]],
        "shape": ["circle", "diamond", "square"], "size": [150, 420, 260]}
    assert all(encoding[c]["scale"]["domain"] == LABELS and encoding[c]["field"] == "series"
               and encoding[c]["legend"] == {"title": None} for c in ("color", "strokeDash", "shape", "size"))


def test_quantities_are_ordinal_and_categories_nominal():
    encoding = _spec()["encoding"]
    assert (encoding["size"]["type"], encoding["size"]["scale"]["type"]) == ("ordinal", "ordinal")
    assert [encoding[c]["type"] for c in ("color", "strokeDash", "shape")] == ["nominal"] * 3
    assert all("type" not in encoding[c]["scale"] for c in ("color", "strokeDash", "shape"))


def test_a_cue_without_a_value_for_every_series_is_refused():
    with pytest.raises(ValueError, match="shape: 2 values for 3 series"):
        series_channels("series", LABELS, color=["#000000"] * 3, shape=["circle", "square"])

"""The dashboard's charts as an AppTest run rendered them: each Vega-Lite spec (a dict) with its datasets as
DataFrames (Streamlit sends an Altair chart's data as named Arrow tables beside the spec)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

ELEMENT = "vega_lite_chart"  # what AppTest calls st.altair_chart's element


@dataclass
class Chart:
    spec: dict
    frames: dict[str, pd.DataFrame]

    @property
    def title(self) -> str:
        """The title and its subtitle lines, one string (for ``in`` checks)."""
        t = self.spec.get("title") or {}
        if isinstance(t, str):
            return t
        parts = [t.get("text") or "", t.get("subtitle") or []]
        return " ".join(p if isinstance(p, str) else " ".join(map(str, p)) for p in parts)

    def text(self) -> str:
        """Everything the chart shows as text: the spec and every dataset's cells."""
        return " ".join([json.dumps(self.spec)] + [f.to_csv(index=False) for f in self.frames.values()])

    def rows(self) -> pd.DataFrame:
        """All datasets stacked (columns unioned): the chart's data, whichever layer draws it."""
        frames = [f for f in self.frames.values() if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def chart_of(element) -> Chart:
    proto = element.proto
    frames = {d.name: pa.ipc.open_stream(d.data.data).read_pandas() for d in proto.datasets}
    return Chart(json.loads(proto.spec), frames)


def charts(at) -> list[Chart]:
    """Every chart the run drew, in page order."""
    return [chart_of(e) for e in at.get(ELEMENT)]


def chart_titled(at, words: str) -> Chart:
    """The one chart whose title (or subtitle) contains ``words``."""
    found = [c for c in charts(at) if words in c.title]
    assert len(found) == 1, f"{len(found)} charts titled with {words!r}: {[c.title for c in charts(at)]}"
    return found[0]

"""Text stays text: file names holding Markdown links, HTML, LaTeX and formula prefixes, uploaded with a real film,
show exactly as typed on the Analyse page (never a link, a tag or a formula), arrive neutralised in the review
CSV, and are replaced by ``film <short hash>`` everywhere when names are hidden (tests/unit/test_privacy.py: the
report PNG)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.charts import charts
from ui.text import literal

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ["[x](https://evil.example)<b>b</b>=1+2.png", "$x$ _y_ **z** <img src=x onerror=alert(1)>.jpeg",
           '=HYPERLINK("https://evil.example","click").png']
#: Elements whose text Streamlit renders as Markdown (and so could turn a name into a link, a tag or a formula).
MARKDOWN_KINDS = ("markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader")


def _markdown_texts(at) -> list[str]:
    texts = [element.value for kind in MARKDOWN_KINDS for element in at.get(kind)]
    widgets = ("toggle", "checkbox", "button", "radio", "selectbox")
    texts += [widget.label for kind in widgets for widget in at.get(kind)]
    return texts


def _analyse_with(films: list[tuple[str, bytes]], hide: bool, monkeypatch) -> AppTest:
    monkeypatch.setenv("PNEUMO_HIDE_FILE_NAMES", "1" if hide else "0")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/analyse.py")
    at.run()
    at.file_uploader(key="uploads").set_value([(name, data, "image/png") for name, data in films])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _review_csv(at) -> str:
    """The review CSV the page's download button builds (its callback's two calls), from the films scored."""
    from pneumo_core.review import decisions as review
    from pneumo_core.review.csv_export import safe_csv
    from ui.study import SCORED_KEY

    preds = [scored.pred for scored in at.session_state[SCORED_KEY].values()]
    return safe_csv(review.review_rows(preds, preds[0].threshold, "test"))


@pytest.fixture(scope="module")
def film_bytes(test_normal) -> bytes:
    return test_normal.read_bytes()


@pytest.fixture(scope="module")
def other_film_bytes(test_pneumonia) -> bytes:
    return test_pneumonia.read_bytes()


def test_hostile_file_names_show_as_typed_and_are_neutralised_in_the_csv(film_bytes, monkeypatch):
    at = _analyse_with([(name, film_bytes) for name in HOSTILE], hide=False, monkeypatch=monkeypatch)
    texts = _markdown_texts(at)
    for name in HOSTILE:
        assert f"#### {literal(name)}" in texts, f"no heading shows {name!r} literally"
        assert not [t for t in texts if name in t], f"{name!r} reached a Markdown context unescaped"
    assert not [t for t in texts if "](https://evil" in t.replace("\\", "") and "\\]\\(" not in t]
    review = at.dataframe[0].value  # the review table: cells shown as typed
    assert list(review["file"]) == HOSTILE
    csv = _review_csv(at)
    assert "\n'=HYPERLINK(" in csv.replace('"', "") and "\n=HYPERLINK" not in csv.replace('"', "")

    at.toggle(key="viewer_upload_0").set_value(True).run()  # the zoomable viewer titles the film
    (viewer,) = charts(at)
    assert viewer.spec["title"]["text"] == HOSTILE[0]  # Vega-Lite titles are plain text: as typed


def test_hidden_file_names_reach_no_page_csv_or_report(film_bytes, other_film_bytes, monkeypatch):
    """With names hidden, each film is ``film <8 hex of its SHA-256>`` in headings, the review table and CSV,
    the report's file name; the uploaded name appears nowhere."""
    import hashlib

    other = other_film_bytes
    at = _analyse_with([("SMITH_JOHN_19800101.png", film_bytes), ("DOE_JANE_1975.jpeg", other)], hide=True,
                       monkeypatch=monkeypatch)
    names = [f"film {hashlib.sha256(data).hexdigest()[:8]}" for data in (film_bytes, other)]
    names = [names[0] + ".png", names[1] + ".jpeg"]
    texts = _markdown_texts(at)
    for shown in names:
        assert f"#### {literal(shown)}" in texts
    assert list(at.dataframe[0].value["file"]) == names
    csv = _review_csv(at)
    everything = "\n".join(texts) + csv + "\n".join(str(v) for v in at.dataframe[0].value.to_numpy().ravel())
    for secret in ("SMITH", "JOHN", "19800101", "DOE", "JANE", "1975"):
        assert secret not in everything
    # the report PNG prints pred.file and is named after it (ui.study.study_report_bytes)
    from ui.study import SCORED_KEY

    assert sorted(scored.pred.file for scored in at.session_state[SCORED_KEY].values()) == sorted(names)

"""Reads on the Analyse page and the "Your site" page (app_pages/site.py), driven with Streamlit's AppTest on the
bundled teaching films and the shipped model, against a real SQLite file.

A reader records reads of several films (with a reference standard), a reload shows them again, a second reader sees
their own; a locked database keeps the choice and saves it on the next run; a read made under another model version
is offered, not counted. The site page's figures equal those computed here from the stored rows; adopting the
proposed threshold is recorded and shown on Analyse, and a revert brings the shipped one back; one class only and
too few reads are said plainly; a signed-in radiologist reads under their address and a teacher may not adopt.
"""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pneumo_core.adaptation.adapt import MIN_FILMS, adapt_scores, training_share
from pneumo_core.config import data_dir
from pneumo_core.datasets.listing import list_images
from pneumo_core.site.validation import validate_site
from pneumo_core.storage.reads import FilmScore, SiteReads, film_truths
from tests.helpers.charts import chart_titled
from tests.helpers.support import require
from tests.pages.test_access_pages import AUTH, RADIOLOGIST, TEACHER, bound_to
from ui.text import literal

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"
ANALYSE, SITE = "app_pages/analyse.py", "app_pages/site.py"
TIMEOUT = 300
TABLE = pd.read_csv(EXAMPLES / "examples.csv")
HOSTILE = "<b>dr b</b>"  # a nickname that is markup: shown as typed everywhere


@pytest.fixture
def db_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    monkeypatch.setenv("PNEUMO_DB_URL", url)
    monkeypatch.setenv("PNEUMO_DATA_DIR", str(tmp_path / "no-dataset-here"))  # the bundled films only
    monkeypatch.setenv("PNEUMO_ROLE_RADIOLOGIST", RADIOLOGIST["email"])  # used once sign-in is configured
    monkeypatch.setenv("PNEUMO_ROLE_TEACHER", TEACHER["email"])
    return url


@pytest.fixture(scope="module")
def scored(shipped_predictor) -> dict[str, FilmScore]:
    """Example file -> what the Analyse page stores of it (computed here, with the model the page runs)."""
    preds = shipped_predictor.predict_files([EXAMPLES / f for f in TABLE.file])
    return {f: FilmScore(hashlib.sha256((EXAMPLES / f).read_bytes()).hexdigest(), shipped_predictor.name,
                         shipped_predictor.sha256, pred.p_pneumonia, shipped_predictor.threshold, pred.ood_distance)
            for f, pred in zip(TABLE.file, preds)}


# ---------------------------------------------------------------------------- helpers
def open_page(path: str, user: dict | None = None, auth: dict | None = None, address: str = "127.0.0.1"):
    with bound_to(address):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
        if auth is not None:
            at.secrets["auth"] = auth
        if user is not None:
            at.user = user
        at.run()
        at.switch_page(path)
        at.run()
    healthy(at)
    return at


def healthy(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def show_example(at, file: str):
    at.selectbox(key="example_choice").set_value(str(EXAMPLES / file))
    at.button(key="example_run").click().run()
    healthy(at)
    return at


def read_radio(at):
    (radio,) = [r for r in at.radio if r.label.startswith("Read by")]
    return radio


def widget(at, kind: str, label: str):
    (found,) = [w for w in getattr(at, kind) if w.label == label]
    return found


def texts(at, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def as_reader(at, nickname: str):
    at.text_input(key="site_nick_example").input(nickname).run()
    healthy(at)
    return at


def stored(url: str):
    db = SiteReads(url)
    try:
        return db.reads(), db.adoptions()
    finally:
        db.dispose()


def seed_reads(url: str, scored: dict, reader: str, truthful: bool = True, files=None) -> None:
    """``reader`` reads ``files`` (default all 40) as their true class (or all NORMAL)."""
    db = SiteReads(url)
    for row in TABLE.itertuples():
        if files is None or row.file in files:
            db.record(reader, scored[row.file], row.truth if truthful else "NORMAL")
    db.dispose()


# ---------------------------------------------------------------------------- reads on Analyse
def test_reads_of_several_films_survive_a_reload_and_a_second_reader_sees_their_own(db_url, scored):
    at = open_page(ANALYSE)
    show_example(at, "ex01.jpeg")
    assert not [r for r in at.radio if r.label.startswith("Read by")]  # a nickname first, on a local install
    as_reader(at, "dr a")
    read_radio(at).set_value("PNEUMONIA").run()
    widget(at, "selectbox", "Reference standard, when known").set_value("NORMAL").run()
    assert any("Choose where the reference standard comes from" in w for w in texts(at, "warning"))
    widget(at, "selectbox", "Its source").set_value("CT").run()
    for file, read in (("ex02.jpeg", "NORMAL"), ("ex03.jpeg", "UNSURE")):
        show_example(at, file)
        read_radio(at).set_value(read).run()
        healthy(at)
        assert any(c.startswith("Saved ") and f"as {read if read != 'UNSURE' else 'unsure'}" in c
                   for c in texts(at, "caption"))
    reads, _ = stored(db_url)
    assert [(r.reader, r.film_sha256, r.read, r.reference, r.reference_source) for r in reads] == [
        ("dr a", scored["ex01.jpeg"].film_sha256, "PNEUMONIA", "NORMAL", "CT"),
        ("dr a", scored["ex02.jpeg"].film_sha256, "NORMAL", None, None),
        ("dr a", scored["ex03.jpeg"].film_sha256, "UNSURE", None, None)]
    for read in reads:  # the page stored the model's own score, version and threshold
        film = next(f for f in scored.values() if f.film_sha256 == read.film_sha256)
        assert read.model_sha256 == film.model_sha256 and read.p_pneumonia == pytest.approx(film.p_pneumonia, abs=1e-6)
        assert read.threshold == pytest.approx(film.threshold) and read.ood_distance == pytest.approx(film.ood_distance)
    assert reads[0].saves == 2  # the read, then the reference standard with it

    at = open_page(ANALYSE)  # a reload: a new browser session
    show_example(at, "ex01.jpeg")
    as_reader(at, "dr a")
    assert read_radio(at).value == "PNEUMONIA"
    assert widget(at, "selectbox", "Reference standard, when known").value == "NORMAL"
    assert widget(at, "selectbox", "Its source").value == "CT"

    at.button(key=next(b.key for b in at.button if b.label == "Another reader")).click().run()
    as_reader(at, "dr b")
    assert read_radio(at).value is None and read_radio(at).label == "Read by dr b"
    read_radio(at).set_value("NORMAL").run()
    read_radio(at).set_value("PNEUMONIA").run()  # a changed read: one row, both saves kept
    reads, _ = stored(db_url)
    assert len(reads) == 4
    second = [r for r in reads if r.reader == "dr b"]
    assert [(r.film_sha256, r.read, r.saves) for r in second] == [(scored["ex01.jpeg"].film_sha256, "PNEUMONIA", 2)]
    assert film_truths(reads)["readers"].sum() == 4 and len(film_truths(reads)) == 3  # two readers, one film


def test_a_locked_database_keeps_the_choice_and_saves_it_on_the_next_run(db_url, scored):
    at = open_page(ANALYSE)
    show_example(at, "ex04.jpeg")
    as_reader(at, "dr a")
    path = db_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock (the page waits 10 s, then says so)
    try:
        read_radio(at).set_value("PNEUMONIA").run()
        healthy(at)
        (error,) = texts(at, "error")
        assert f"Not saved: the database {path} is locked by another program" in error
        assert "kept in this session" in error
        assert read_radio(at).value == "PNEUMONIA"  # the choice stays on the page
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert stored(db_url)[0] == []
    at.run()  # the next run saves it
    healthy(at)
    assert not texts(at, "error")
    reads, _ = stored(db_url)
    assert [(r.read, r.saves) for r in reads] == [("PNEUMONIA", 1)]


def test_a_read_under_another_model_version_is_offered_not_counted(db_url, scored):
    film = scored["ex05.jpeg"]
    db = SiteReads(db_url)
    db.record("dr a", FilmScore(film.film_sha256, film.model, "0" * 64, 0.3, 0.5, None), "PNEUMONIA")
    db.dispose()
    at = open_page(ANALYSE)
    show_example(at, "ex05.jpeg")
    as_reader(at, "dr a")
    assert read_radio(at).value is None
    assert any("when it was scored by another version of this model" in i for i in texts(at, "info"))
    at.button(key=next(b.key for b in at.button if b.label == "Record the same read for this version")).click().run()
    assert read_radio(at).value == "PNEUMONIA"
    reads, _ = stored(db_url)
    assert sorted(r.model_sha256 for r in reads) == sorted(["0" * 64, film.model_sha256])
    at.switch_page(SITE).run()
    healthy(at)
    assert any("1 read was made when films were scored by another version" in c for c in texts(at, "caption"))
    assert any("1 read of 1 film by 1 reader" in m for m in texts(at, "markdown"))


# ---------------------------------------------------------------------------- the site page
def test_the_site_page_shows_the_stored_rows_figures_and_an_adoption_reaches_analyse(db_url, scored):
    seed_reads(db_url, scored, "dr a")
    seed_reads(db_url, scored, HOSTILE, files=set(TABLE.file[::4]))
    at = open_page(SITE)
    reads, _ = stored(db_url)
    films = film_truths(reads)
    y, p = (films["truth"] == "PNEUMONIA").astype(int).to_numpy(), films["p_pneumonia"].to_numpy()
    expected = validate_site(y, p, 0.548521876335144)  # the same films, computed here from the stored rows
    shown = at.dataframe[0].value.set_index("figure")
    for key, name in (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"),
                      ("npv", "NPV"), ("auc", "ROC AUC")):
        assert shown.loc[name, "value"] == f"{expected['at_active'][key]:.3f}"
        low, high = expected["at_active"]["ci95"][key]
        assert shown.loc[name, "95% interval"] == f"{low:.3f}-{high:.3f}"
    proposed = expected["proposed_threshold"]
    assert any(m.startswith(f"**Proposed: {proposed:.3f}**") for m in texts(at, "markdown"))
    tables = [d.value for d in at.dataframe if "film's class" in d.value.columns]
    for table, block in zip(tables, (expected["at_active"], expected["at_proposed"])):
        (tn, fp), (fn, tp) = block["confusion_matrix"]
        assert table[["model NORMAL", "model PNEUMONIA"]].values.tolist() == [[tn, fp], [fn, tp]]
    readers = next(d.value for d in at.dataframe if "reader" in d.value.columns).set_index("reader")
    assert readers.loc[HOSTILE, "films with a class"] == 10 and readers.loc[HOSTILE, "sensitivity"] == "1.000"
    roc = chart_titled(at, "readers on this site")
    assert "SHA-256" in roc.title and "40 films (20 NORMAL, 20 PNEUMONIA)" in roc.title
    rows = roc.rows()
    curve = rows[rows.series.str.startswith("model (AUC")]
    assert curve.series.iloc[0] == f"model (AUC {expected['at_active']['auc']:.3f})"
    assert curve.fpr.tolist() == pytest.approx(expected["roc"]["fpr"]) and curve.tpr.tolist() == pytest.approx(
        expected["roc"]["tpr"])
    for what, block in (("active", expected["at_active"]), ("proposed", expected["at_proposed"])):
        (point,) = rows[rows.series == f"model at the {what} threshold {block['threshold']:.3f}"].itertuples()
        assert (point.fpr, point.tpr) == pytest.approx((1 - block["specificity"], block["sensitivity"]))
    readers_drawn = rows[rows.reader.notna()].set_index("reader")  # both read 10 films the other read as well
    assert sorted(readers_drawn.index) == sorted(["dr a", HOSTILE])  # the nickname as typed: plain text
    for name in ("dr a", HOSTILE):
        assert readers_drawn.loc[name, ["fpr", "tpr", "films"]].tolist() == [0, 1, 10]
        assert readers_drawn.loc[name, "series"] == f"{name}: sensitivity 1.000, specificity 1.000 (10 films)"
    assert "&lt;" not in roc.text()
    bins = chart_titled(at, "Recalibration from this site's reads").rows()  # 20 films a class: drawn
    assert bins.dropna(subset=["n"]).groupby("score").n.sum().to_dict() == {"raw score": 40, "calibrated score": 40}
    assert roc.spec["width"] == roc.spec["height"]  # square ROC axes
    drift = next(d.value for d in at.dataframe if "week" in d.value.columns)
    assert drift["reads"].sum() == 50 and drift["films"].sum() == 40
    drawn = chart_titled(at, "Drift by week").rows()  # the chart draws the table's weeks
    for what, column in (("reads", "reads"), ("films first read", "films")):
        assert drawn[drawn.what == what].set_index("week")["count"].to_dict() == drift.set_index("week")[
            column].to_dict()
    rates = drawn[drawn.positive_rate.notna()].set_index("week")
    assert rates.positive_rate.to_dict() == pytest.approx(drift.set_index("week").positive_rate.to_dict())
    assert any("40 films (20 NORMAL, 20 PNEUMONIA)" in c and "SHA-256" in c for c in texts(at, "caption"))

    assert widget(at, "button", "Adopt the proposed threshold").disabled
    at.checkbox(key="site_adopt_sure_finetuned").check().run()
    widget(at, "button", "Adopt the proposed threshold").click().run()
    healthy(at)
    _, adoptions = stored(db_url)
    (adoption,) = adoptions
    assert (adoption.adopted_by, adoption.old_threshold, adoption.n_reads, adoption.active) == (
        "local", pytest.approx(0.548521876335144), 40, True)
    assert adoption.new_threshold == pytest.approx(proposed)
    note = f"Site threshold {proposed:.3f} adopted by local on {adoption.adopted_at:%Y-%m-%d} (40 reads"
    assert any(i.startswith(note) for i in texts(at, "info"))

    at.switch_page(ANALYSE).run()
    healthy(at)
    assert any(c.startswith(note) and c.endswith("shipped 0.549.") for c in texts(at.sidebar, "caption"))
    assert at.slider(key="thr_finetuned").value == pytest.approx(proposed)
    show_example(at, "ex01.jpeg")
    assert any(c.startswith(f"Threshold {proposed:.3f}, operating point: site threshold (adopted)")
               for c in texts(at, "caption"))

    at.switch_page(SITE).run()
    widget(at, "button", "Revert to the shipped threshold 0.549").click().run()
    healthy(at)
    assert stored(db_url)[1][0].end_reason == "reverted"
    at.switch_page(ANALYSE).run()
    assert at.slider(key="thr_finetuned").value == pytest.approx(0.548521876335144)
    assert any(c.startswith("Shipped threshold 0.549") for c in texts(at.sidebar, "caption"))


def test_one_class_only_and_too_few_reads_are_said_plainly(db_url, scored):
    normal = set(TABLE.file[TABLE.truth == "NORMAL"][:5])
    seed_reads(db_url, scored, "dr a", files=normal)
    at = open_page(SITE)
    assert any("No site figures yet: all 5 reads are NORMAL" in w for w in texts(at, "warning"))
    assert not any(b.label == "Adopt the proposed threshold" for b in at.button)
    seed_reads(db_url, scored, "dr a", files=set(TABLE.file[TABLE.truth == "PNEUMONIA"][:5]))
    at = open_page(SITE)
    assert any("No threshold proposed yet: 5 NORMAL and 5 PNEUMONIA reads: a site threshold needs at least 20 of "
               "each" in i for i in texts(at, "info"))
    assert not any(b.label == "Adopt the proposed threshold" for b in at.button)


def test_signed_in_reads_carry_the_address_and_only_a_radiologist_adopts(db_url, scored):
    normal = TABLE.file[TABLE.truth == "NORMAL"].iloc[2]  # read right, so the site keeps 20 films of each class
    at = open_page(ANALYSE, RADIOLOGIST, AUTH, address="0.0.0.0")
    with bound_to("0.0.0.0"):
        show_example(at, normal)
    assert not at.text_input  # no nickname: the signed-in address is the reader
    with bound_to("0.0.0.0"):
        read_radio(at).set_value("NORMAL").run()
    assert [r.reader for r in stored(db_url)[0]] == ["ana@hospital.test"]

    seed_reads(db_url, scored, "dr a")
    at = open_page(SITE, TEACHER, AUTH, address="0.0.0.0")
    assert any("Adopting a site threshold needs the radiologist role" in c for c in texts(at, "caption"))
    assert not any(b.label == "Adopt the proposed threshold" for b in at.button)
    readers = next(d.value for d in at.dataframe if "reader" in d.value.columns)
    assert list(readers["reader"]) == ["reader 1", "reader 2"]  # names only for those who may record reads

    at = open_page(SITE, RADIOLOGIST, AUTH, address="0.0.0.0")
    with bound_to("0.0.0.0"):
        at.checkbox(key="site_adopt_sure_finetuned").check().run()
        widget(at, "button", "Adopt the proposed threshold").click().run()
    assert stored(db_url)[1][0].adopted_by == "ana@hospital.test"
    at = open_page(ANALYSE, address="0.0.0.0")  # shared without sign-in: no reads recorded
    with bound_to("0.0.0.0"):
        show_example(at, normal)
    assert any("Recording reads is off on a shared server without sign-in" in c for c in texts(at, "caption"))
    assert np.isclose(at.slider(key="thr_finetuned").value, stored(db_url)[1][0].new_threshold)


# ---------------------------------------------------------------------------- adapt to this site (EM, opt-in)
TRAIN = data_dir() / "train"  # read at import: the page's own PNEUMO_DATA_DIR points elsewhere


@pytest.fixture(scope="module")
def training_scored(shipped_predictor) -> list[tuple[FilmScore, str]]:
    """What Analyse would store of 60 training films (45 PNEUMONIA, 15 NORMAL), with each film's class."""
    require(TRAIN.is_dir(), f"training films not found at {TRAIN} (set PNEUMO_DATA_DIR)")
    films = list_images(TRAIN)
    chosen = pd.concat([films[films.label == 1].head(45), films[films.label == 0].head(15)])
    preds = shipped_predictor.predict_files(list(chosen.path))
    return [(FilmScore(hashlib.sha256(Path(path).read_bytes()).hexdigest(), shipped_predictor.name,
                       shipped_predictor.sha256, pred.p_pneumonia, shipped_predictor.threshold, pred.ood_distance),
             "PNEUMONIA" if label else "NORMAL") for path, label, pred in zip(chosen.path, chosen.label, preds)]


def test_adapting_to_the_site_needs_enough_films_then_its_threshold_is_adopted_with_its_source(
        db_url, scored, training_scored, shipped_predictor):
    seed_reads(db_url, scored, "dr a")
    at = open_page(SITE)
    assert any(i.startswith(f"Not yet: adapting needs the scores of {MIN_FILMS} films read with this model version "
                            f"(40 now): {MIN_FILMS - 40} more.") for i in texts(at, "info"))
    assert not any(b.label == "Adopt this threshold" for b in at.button)

    db = SiteReads(db_url)
    for film, truth in training_scored:
        db.record("dr a", film, truth)
    db.dispose()
    at = open_page(SITE)
    reads, _ = stored(db_url)
    p = film_truths(reads)["p_pneumonia"].to_numpy()  # the stored rows' scores, no class used
    expected = adapt_scores(list(p), 0.548521876335144, training_share(shipped_predictor.info))
    shown = next(d.value for d in at.dataframe if "site threshold" in d.value.columns).iloc[0]
    assert shown["films scored"] == 100 and shown["site threshold"] == f"{expected['threshold_site']:.3f}"
    assert shown["pneumonia share, EM estimate"].startswith(f"{expected['estimated_site_prevalence']:.1%}")
    changed = int(((p >= expected["threshold_site"]) != (p >= 0.548521876335144)).sum())
    assert shown["labels that would change"] == changed
    assert any("by one or two films a fold" in c for c in texts(at, "caption"))

    assert widget(at, "button", "Adopt this threshold").disabled
    at.checkbox(key="site_adapt_sure_finetuned").check().run()
    widget(at, "button", "Adopt this threshold").click().run()
    healthy(at)
    (adoption,) = stored(db_url)[1]
    assert adoption.new_threshold == pytest.approx(expected["threshold_site"]) and adoption.active
    assert (adoption.source, adoption.n_reads, adoption.old_threshold) == (
        "EM prior-shift adaptation (100 films)", 100, pytest.approx(0.548521876335144))
    source = literal("EM prior-shift adaptation (100 films)")  # stored text: shown as plain text, not Markdown
    assert any(i.endswith(f"({source}); shipped 0.549.") for i in texts(at, "info"))
    history = next(d.value for d in at.dataframe if "source" in d.value.columns)
    assert history["source"].tolist() == ["EM prior-shift adaptation (100 films)"]
    widget(at, "button", "Revert to the shipped threshold 0.549").click().run()
    healthy(at)
    assert stored(db_url)[1][0].end_reason == "reverted"

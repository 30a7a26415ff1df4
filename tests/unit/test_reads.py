"""A site's reads and adopted thresholds (pneumo_core.storage.reads) on a real SQLite file and a real PostgreSQL
cluster, with the 40 bundled teaching films scored by the shipped model: a read saved, changed (one row, every save
kept), two readers of one film, a film scored by another model version, bad input, a locked and a read-only file,
adoptions made, replaced and reverted, the site's figures from the stored rows, ``site reads export``, and a
database of the current release upgraded through revision 0003 with nothing lost."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc

from pneumo_core.errors import SiteDataError, SiteReadError, StorageError
from pneumo_core.evaluation.metrics import choose_threshold
from pneumo_core.site.validation import validate_site
from pneumo_core.storage.migrate import head_revision
from pneumo_core.storage.reads import FilmScore, SiteReads, film_truths, reader_points
from tests.helpers.postgres import postgres  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"
FIXTURES = ROOT / "tests" / "fixtures"
OTHER_VERSION = "0" * 64  # the SHA-256 of "another version" of the model


class Clock:
    """A clock the test moves: reads a week apart fall in different weeks."""

    def __init__(self):
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture(scope="module")
def films(shipped_predictor) -> list[tuple[FilmScore, str]]:
    """The bundled films as the Analyse page stores them (file SHA-256, the model's score, its OOD distance) with
    their true class from examples.csv."""
    table = pd.read_csv(EXAMPLES / "examples.csv")
    preds = shipped_predictor.predict_files([EXAMPLES / f for f in table.file])
    out = []
    for row, pred in zip(table.itertuples(), preds):
        sha = hashlib.sha256((EXAMPLES / row.file).read_bytes()).hexdigest()
        assert sha == row.sha256 and pred.error is None
        out.append((FilmScore(sha, shipped_predictor.name, shipped_predictor.sha256, pred.p_pneumonia,
                              shipped_predictor.threshold, pred.ood_distance), row.truth))
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'site.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()


def _open(url: str, clock=None) -> SiteReads:
    return SiteReads(url, clock=clock or Clock())


def test_a_changed_read_is_one_row_with_every_save_kept(url, films):
    db = _open(url)
    film = films[0][0]
    first = db.record("dr a", film, "PNEUMONIA")
    assert (first.read, first.reference, first.saves) == ("PNEUMONIA", None, 1)
    assert db.record("dr a", film, "PNEUMONIA").saves == 1  # the same choice again writes nothing
    changed = db.record("dr a", film, "NORMAL", "NORMAL", "follow-up")
    assert (changed.read, changed.reference, changed.reference_source, changed.saves) == (
        "NORMAL", "NORMAL", "follow-up", 2)
    assert changed.first_at == first.first_at < changed.updated_at
    assert [r.read for r in db.reads(film.model_sha256)] == ["NORMAL"]  # counted once
    assert [(h["read"], h["reference"]) for h in db.history("dr a", film.film_sha256, film.model_sha256)] == [
        ("PNEUMONIA", None), ("NORMAL", "NORMAL")]  # nothing chosen is lost
    stored = db.read_of("dr a", film.film_sha256, film.model_sha256)
    assert stored.p_pneumonia == pytest.approx(film.p_pneumonia) and stored.ood_distance == pytest.approx(
        film.ood_distance)
    db.dispose()


def test_two_readers_of_one_film_count_the_film_once(url, films):
    db = _open(url)
    (agreed, _), (split, _), (referenced, _), (disputed, _), (unsure, _) = films[:5]
    for reader in ("dr a", "dr b"):
        db.record(reader, agreed, "PNEUMONIA")
        db.record(reader, unsure, "UNSURE")
    db.record("dr a", split, "PNEUMONIA")
    db.record("dr b", split, "NORMAL")
    db.record("dr a", referenced, "PNEUMONIA")
    db.record("dr b", referenced, "PNEUMONIA", "NORMAL", "CT")  # the reference standard outranks both reads
    db.record("dr a", disputed, "NORMAL", "NORMAL", "follow-up")
    db.record("dr b", disputed, "NORMAL", "PNEUMONIA", "microbiology")
    reads = db.reads(agreed.model_sha256)
    assert len(reads) == 10
    table = film_truths(reads).set_index("film_sha256")
    assert len(table) == 5 and set(table["readers"]) == {2}
    assert (table.loc[agreed.film_sha256, "truth"], table.loc[agreed.film_sha256, "truth_from"]) == (
        "PNEUMONIA", "readers")
    assert (table.loc[referenced.film_sha256, "truth"], table.loc[referenced.film_sha256, "truth_from"]) == (
        "NORMAL", "reference standard")
    assert pd.isna(table.loc[split.film_sha256, "truth"])
    assert table.loc[split.film_sha256, "excluded"] == "the readers disagree and no reference standard is recorded"
    assert table.loc[disputed.film_sha256, "excluded"] == "reference standards recorded for it disagree"
    assert table.loc[unsure.film_sha256, "excluded"] == "every read is unsure"
    db.dispose()


def test_a_film_scored_by_another_model_version_is_kept_apart(url, films):
    db = _open(url)
    film = films[1][0]
    older = FilmScore(film.film_sha256, film.model, OTHER_VERSION, 0.2, 0.5, None)
    db.record("dr a", older, "NORMAL")
    assert db.read_of("dr a", film.film_sha256, film.model_sha256) is None
    assert [(r.read, r.model_sha256) for r in db.other_versions("dr a", film.film_sha256, film.model_sha256)] == [
        ("NORMAL", OTHER_VERSION)]
    db.record("dr a", film, "PNEUMONIA")
    assert [r.read for r in db.reads(film.model_sha256)] == ["PNEUMONIA"]
    assert [r.read for r in db.reads(OTHER_VERSION)] == ["NORMAL"]  # kept, and not counted with this version
    assert len(db.reads()) == 2
    db.dispose()


@pytest.mark.parametrize("change, message", [
    ({"read": "maybe"}, "a read is one of NORMAL, PNEUMONIA, UNSURE"),
    ({"reference": "NORMAL"}, "needs both its class and its source"),
    ({"reference": "UNSURE", "reference_source": "CT"}, "a reference standard is NORMAL or PNEUMONIA"),
    ({"reference": "NORMAL", "reference_source": "gut feeling"}, "source is one of follow-up, CT"),
    ({"reader": "  "}, "a read needs a reader"),
    ({"reader": "dr\u200b a"}, "one line of at most 80 printable characters"),
    ({"film": {"film_sha256": "IMG_0001.dcm"}}, "the film's SHA-256 must be 64 lower-case hex digits"),
    ({"film": {"p_pneumonia": float("nan")}}, "a read needs the model's score"),
])
def test_bad_input_is_refused_in_one_line_and_nothing_is_stored(tmp_path, films, change, message):
    from dataclasses import replace

    db = _open(f"sqlite:///{tmp_path / 'site.sqlite3'}")
    film = replace(films[0][0], **change.pop("film", {}))
    args = {"reader": "dr a", "film": film, "read": "NORMAL", "reference": None, "reference_source": None, **change}
    with pytest.raises(SiteReadError, match=message) as caught:
        db.record(**args)
    assert "\n" not in str(caught.value)
    assert db.reads() == []
    db.dispose()


def test_a_locked_database_says_so_and_keeps_what_was_stored(tmp_path, films):
    path = tmp_path / "site.sqlite3"
    db = SiteReads(f"sqlite:///{path}", busy_timeout_s=0.2)
    film = films[2][0]
    db.record("dr a", film, "NORMAL")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        with pytest.raises(StorageError, match=f"the database {path} is locked by another program; try again"):
            db.record("dr a", film, "PNEUMONIA")
        with pytest.raises(StorageError, match="locked"):
            db.adopt(model="finetuned", model_sha256=film.model_sha256, shipped_threshold=0.549, new_threshold=0.4,
                     n_normal=20, n_pneumonia=20, who="dr a")
        assert [r.read for r in db.reads()] == ["NORMAL"]  # reading goes on (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert db.record("dr a", film, "PNEUMONIA").saves == 2  # the retry stores it, once
    assert db.adoptions() == []
    db.dispose()


def test_a_read_only_database_says_so_and_can_still_be_read(films):
    import shutil
    import tempfile

    from tests.unit.test_quiz import _unprivileged

    folder = Path(tempfile.mkdtemp(prefix="pneumo-ro-"))
    folder.chmod(0o777)
    path = folder / "site.sqlite3"
    film = films[3][0]
    try:
        db = SiteReads(f"sqlite:///{path}")
        db.record("dr a", film, "PNEUMONIA")
        db.dispose()
        path.chmod(0o444)

        def attempt() -> dict:
            again = SiteReads(f"sqlite:///{path}")
            out = {"reads": [r.read for r in again.reads()]}
            try:
                again.record("dr a", film, "NORMAL")
                out["record"] = "stored"
            except StorageError as exc:
                out["record"] = str(exc)
            return out

        outcome = _unprivileged(attempt)
        assert outcome["reads"] == ["PNEUMONIA"]
        assert outcome["record"].startswith(f"the database {path} is read-only")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_adoptions_are_recorded_replaced_and_reverted(url, films):
    db = _open(url)
    sha = films[0][0].model_sha256
    assert db.active(sha) is None
    first = db.adopt(model="finetuned", model_sha256=sha, shipped_threshold=0.549, new_threshold=0.41,
                     n_normal=21, n_pneumonia=20, who="dr a")
    assert (first.old_threshold, first.new_threshold, first.n_reads, first.adopted_by, first.active) == (
        0.549, 0.41, 41, "dr a", True)
    second = db.adopt(model="finetuned", model_sha256=sha, shipped_threshold=0.549, new_threshold=0.45,
                      n_normal=25, n_pneumonia=22, who="dr b")
    assert second.old_threshold == 0.41  # the threshold in force, not the shipped one
    assert db.active(sha) == second
    with pytest.raises(SiteReadError, match="changed meanwhile by someone else"):
        db.revert(model_sha256=sha, who="dr a", adoption_id=first.id)  # what dr a saw is no longer in force
    reverted = db.revert(model_sha256=sha, who="dr a", adoption_id=second.id)
    assert (reverted.end_reason, reverted.ended_by) == ("reverted", "dr a")
    assert db.active(sha) is None  # back to the shipped threshold
    assert db.active(OTHER_VERSION) is None
    with pytest.raises(SiteReadError, match="the shipped one applies"):
        db.revert(model_sha256=sha, who="dr a")
    assert [(a.new_threshold, a.end_reason) for a in db.adoptions(sha)] == [(0.45, "reverted"), (0.41, "replaced")]
    db.dispose()


def test_the_database_itself_allows_one_active_adoption_per_model(url):
    db = _open(url)
    db.adopt(model="finetuned", model_sha256=OTHER_VERSION, shipped_threshold=0.5, new_threshold=0.4, n_normal=20,
             n_pneumonia=20, who="dr a")
    engine = create_engine(url)
    try:
        with pytest.raises(sa_exc.IntegrityError), engine.begin() as conn:  # a second writer skipping the code
            conn.execute(text("INSERT INTO site_thresholds (model, model_sha256, old_threshold, new_threshold, "
                              "n_reads, n_normal, n_pneumonia, adopted_by, adopted_at) VALUES ('finetuned', "
                              f"'{OTHER_VERSION}', 0.5, 0.3, 40, 20, 20, 'dr b', CURRENT_TIMESTAMP)"))
    finally:
        engine.dispose()
    assert len(db.adoptions()) == 1
    db.dispose()


def test_the_site_figures_are_those_of_the_stored_rows(tmp_path, films):
    from pneumo_core.site.validation import weekly_drift

    clock = Clock()
    db = _open(f"sqlite:///{tmp_path / 'site.sqlite3'}", clock)
    for i, (film, truth) in enumerate(films):
        if i == 20:
            clock.now += timedelta(days=7)  # the second half of the films is read a week later
        db.record("dr a", film, truth, *(("NORMAL", "follow-up") if i == 0 else ()))  # dr a reads every film right
        if i % 4 == 0:  # dr b reads every fourth film (5 NORMAL, 5 PNEUMONIA), right but for the first
            db.record("dr b", film, "PNEUMONIA" if i == 0 else truth)
    reads = db.reads(films[0][0].model_sha256)
    table = film_truths(reads).set_index("film_sha256")
    assert len(reads) == 50 and len(table) == 40
    assert list(table.loc[[f.film_sha256 for f, _ in films], "truth"]) == [t for _, t in films]
    assert (table["truth_from"] == "reference standard").sum() == 1 and not table["excluded"].any()

    y = np.array([t == "PNEUMONIA" for _, t in films], int)  # computed here from the films, not the rows
    p = np.array([f.p_pneumonia for f, _ in films])
    stored = table.loc[[f.film_sha256 for f, _ in films]]
    result = validate_site((stored["truth"] == "PNEUMONIA").astype(int), stored["p_pneumonia"], 0.549, n_boot=0)
    assert result["counts"] == {"NORMAL": 20, "PNEUMONIA": 20}
    assert result["proposed_threshold"] == pytest.approx(choose_threshold(y, p))
    tp = int(((p >= 0.549) & (y == 1)).sum())
    assert result["at_active"]["sensitivity"] == pytest.approx(tp / 20)

    points = {point["reader"]: point for point in reader_points(reads, 0.549)}
    assert (points["dr a"]["n"], points["dr a"]["sensitivity"], points["dr a"]["specificity"]) == (10, 1.0, 1.0)
    assert (points["dr b"]["n"], points["dr b"]["sensitivity"], points["dr b"]["specificity"]) == (10, 1.0, 0.8)
    said = np.array([i == 0 or t == "PNEUMONIA" for i, (_, t) in enumerate(films) if i % 4 == 0])
    model = p[::4] >= 0.549
    observed = (said == model).mean()
    chance = said.mean() * model.mean() + (1 - said.mean()) * (1 - model.mean())
    assert points["dr b"]["kappa_with_model"] == pytest.approx((observed - chance) / (1 - chance))

    weeks = weekly_drift(stored["first_at"].dt.tz_localize(None), stored["p_pneumonia"], 0.549,
                         stored["ood_distance"].astype(float))
    assert [w["films"] for w in weeks] == [20, 20]
    assert [w["positive_rate"] for w in weeks] == pytest.approx([(p[:20] >= 0.549).mean(), (p[20:] >= 0.549).mean()])
    ood = np.array([f.ood_distance for f, _ in films])
    assert [w["mean_ood_distance"] for w in weeks] == pytest.approx([ood[:20].mean(), ood[20:].mean()])
    with pytest.raises(SiteDataError, match="need reads of both classes"):
        validate_site([1, 1, 1], [0.9, 0.8, 0.7], 0.5)
    db.dispose()


def _cli(*args, env_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PNEUMO_DB_URL": env_url}
    return subprocess.run([sys.executable, "-m", "pneumo_core", "site", "reads", "export", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_site_reads_export_csv_and_json(tmp_path, films):
    url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    db = _open(url)
    hostile = "=HYPERLINK(\"http://x\")"
    db.record(hostile, films[0][0], "NORMAL", "NORMAL", "clinical course")
    db.record("dr b", films[0][0], "PNEUMONIA")
    db.record("dr b", films[0][0], "UNSURE")
    db.dispose()
    as_json = _cli("--json", env_url=url)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [(r["reader"], r["read"], r["reference_source"], r["saves"]) for r in rows] == [
        (hostile, "NORMAL", "clinical course", 1), ("dr b", "UNSURE", None, 2)]
    assert rows[0]["film_sha256"] == films[0][0].film_sha256 and rows[0]["model_sha256"] == films[0][0].model_sha256
    as_csv = _cli(env_url=url)
    assert as_csv.returncode == 0 and _cli("--csv", env_url=url).stdout == as_csv.stdout
    lines = as_csv.stdout.splitlines()
    assert lines[0].startswith("reader,film_sha256,model,model_sha256,p_pneumonia,threshold,ood_distance,read")
    assert lines[1].startswith("'=HYPERLINK") or lines[1].startswith("\"'=HYPERLINK")  # not a formula
    assert "ex01" not in as_csv.stdout and "NORMAL2-IM" not in as_csv.stdout  # hashes, never file names


def test_site_reads_export_says_plainly_when_the_database_cannot_be_used(tmp_path):
    notes = tmp_path / "notes.sqlite3"
    notes.write_text("my lecture notes\n" * 50)
    done = _cli(env_url=f"sqlite:///{notes}")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"error: {notes} is not a SQLite database: set PNEUMO_DB_URL to another file"


def test_a_current_release_database_upgrades_through_0003_with_nothing_lost(tmp_path, films):
    """The quiz-only release's database (tests/fixtures, made by that release) opened for reads: quiz rows kept."""
    path = tmp_path / "quiz.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "quiz_release_sqlite.sql").read_text())
        before = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                  for t in ("quiz_quizzes", "quiz_films", "quiz_readers", "quiz_answers")}
    db = SiteReads(f"sqlite:///{path}")
    db.record("dr a", films[0][0], "NORMAL")
    db.dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
        assert head_revision() >= "0003"
        for table, rows in before.items():
            now = conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            assert [row[: len(rows[0])] for row in now] == rows, table  # later revisions only add columns
        assert conn.execute("SELECT reader, read FROM site_reads").fetchall() == [("dr a", "NORMAL")]

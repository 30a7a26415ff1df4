"""The project's database and its Alembic migrations, on a real SQLite file and a real PostgreSQL cluster.

The release-database fixtures (tests/fixtures/quiz_release_*.sql, made by the release before Alembic with
tests/fixtures/make_release_db.py, and what that release reported of them in quiz_release.json) are loaded and
opened with this code: they must upgrade in place with every quiz, reader and answer kept."""
from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from pneumo_core.errors import KeyWithheld, StorageError
from pneumo_core.quiz.rules import QuizStore
from pneumo_core.storage.audit import audit_trail, study_reference
from pneumo_core.storage.database import Database
from pneumo_core.storage.migrate import alembic_config, head_revision
from tests.helpers.postgres import postgres  # noqa: F401 (a fixture)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RELEASE = json.loads((FIXTURES / "quiz_release.json").read_text())
QUIZ_TABLES = ("quiz_schema", "quiz_quizzes", "quiz_films", "quiz_readers", "quiz_answers")


def _release_sqlite(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "quiz_release_sqlite.sql").read_text())
    return f"sqlite:///{path}"


def _release_postgres(server) -> str:
    url = server.new_database()
    with server.connect(url.rsplit("/", 1)[1]) as conn:
        conn.execute((FIXTURES / "quiz_release_postgresql.sql").read_text())
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def release_db(request, tmp_path):
    """A database exactly as the release before Alembic left it, and that release's report of it."""
    if request.param == "sqlite":
        return _release_sqlite(tmp_path / "quiz.sqlite3"), RELEASE["quizzes"]
    return _release_postgres(request.getfixturevalue("postgres")), RELEASE["postgresql"]


def _rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_a_release_database_upgrades_in_place_with_nothing_lost(release_db):
    url, release = release_db
    assert _rows(url, "SELECT version FROM quiz_schema") == [(1,)]
    assert "alembic_version" not in inspect(create_engine(url)).get_table_names()
    # Opening upgrades it. The clock: a few minutes after the release's readers joined (the open quiz has a limit).
    store = QuizStore(url, clock=lambda: datetime(2026, 3, 1, 9, 5, tzinfo=UTC))
    try:
        assert _rows(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
        assert _rows(url, "SELECT version FROM quiz_schema") == [(2,)]  # the release before now refuses it
        for quiz in release:
            results = store.results(quiz["code"], quiz["teacher_key"])  # the teacher key hashed by that release
            assert (results.n_films, results.closed, results.time_limit_minutes) == (
                quiz["n_films"], quiz["closed"], quiz["time_limit_minutes"])
            assert results.films[["position", "key", "truth"]].to_dict("records") == quiz["films"]
            assert results.answers[["nickname", "position", "answer", "confidence"]].to_dict("records") == \
                quiz["answers"]
            assert results.readers[["nickname", "answered", "finished"]].to_dict("records") == quiz["readers"]
            assert results.reveal == "at_end"  # a quiz made before the policy keeps what its readers were told
            for nickname, token in quiz["tokens"].items():  # the readers' saved links still work
                state = store.resume(token)
                assert state.nickname == nickname and state.order == tuple(range(1, quiz["n_films"] + 1))

        # The open quiz goes on: a reader halfway finishes and, as before, sees the truth at once.
        open_quiz = next(q for q in release if not q["closed"])
        halfway = next(r["nickname"] for r in open_quiz["readers"] if 0 < r["answered"] < open_quiz["n_films"])
        token = open_quiz["tokens"][halfway]
        while (position := store.resume(token).next_position) is not None:
            store.answer(token, position, "NORMAL", 3)
        assert set(store.review(token).films["truth"]) <= {"NORMAL", "PNEUMONIA"}

        # The new features work on the upgraded database.
        new = store.new_quiz(n_films=6, seed=12)
        reader = store.join(new.code, "after the upgrade")
        assert new.reveal == "on_close" and sorted(reader.order) == [1, 2, 3, 4, 5, 6]
        while (position := store.resume(reader.token).next_position) is not None:
            store.answer(reader.token, position, "PNEUMONIA", 2)
        with pytest.raises(KeyWithheld):
            store.review(reader.token)
        trail = audit_trail(url)
        trail.record(actor="dr who", role="radiologist", action="pacs_search", count=2,
                     study_refs=[study_reference("1.2.3.4")])
        assert [e.action for e in trail.events()] == ["pacs_search"]
    finally:
        store.dispose()


def _schema(url: str) -> dict:
    """Every quiz table's columns (name, type, nullable, default), keys, unique and check constraints."""
    engine = create_engine(url)
    found = inspect(engine)
    try:
        return {table: {
            "columns": [(c["name"], str(c["type"]).split("(")[0], c["nullable"]) for c in found.get_columns(table)],
            "pk": found.get_pk_constraint(table)["constrained_columns"],
            "fk": [(f["constrained_columns"], f["referred_table"]) for f in found.get_foreign_keys(table)],
            "unique": sorted(sorted(u["column_names"]) for u in found.get_unique_constraints(table)),
            "checks": sorted(c["name"] or "" for c in found.get_check_constraints(table)),
        } for table in QUIZ_TABLES}
    finally:
        engine.dispose()


def test_revision_0001_is_the_release_schema_exactly(release_db, tmp_path, request):
    url, _ = release_db
    if url.startswith("sqlite"):
        made = f"sqlite:///{tmp_path / 'made.sqlite3'}"
    else:
        made = request.getfixturevalue("postgres").new_database()
    engine = create_engine(made)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    engine.dispose()
    assert _schema(made) == _schema(url)


def test_what_cannot_be_read_is_refused_and_left_alone(tmp_path):
    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE quiz_quizzes (id INTEGER PRIMARY KEY, notes TEXT)")
    with pytest.raises(StorageError, match="has quiz tables but no schema version: it was not made by this workbench"):
        Database(f"sqlite:///{foreign}")
    odd = tmp_path / "odd.sqlite3"
    with sqlite3.connect(odd) as conn:
        conn.executescript((FIXTURES / "quiz_release_sqlite.sql").read_text())
        conn.execute("UPDATE quiz_schema SET version = 7")
    with pytest.raises(StorageError, match="records quiz schema 7 without a migration history"):
        Database(f"sqlite:///{odd}")
    for path in (foreign, odd):  # nothing was added to a database that was refused
        with sqlite3.connect(path) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "alembic_version" not in names and "audit_events" not in names


def test_a_failed_upgrade_leaves_the_release_database_as_it_was(tmp_path):
    url = _release_sqlite(tmp_path / "quiz.sqlite3")
    with sqlite3.connect(tmp_path / "quiz.sqlite3") as conn:  # makes revision 0002's CREATE TABLE fail halfway
        conn.execute("CREATE TABLE audit_events (squatter TEXT)")
    with pytest.raises(StorageError, match="cannot be used"):
        Database(url)
    assert _rows(url, "SELECT version FROM quiz_schema") == [(1,)]
    assert "alembic_version" not in inspect(create_engine(url)).get_table_names()  # not even stamped
    assert "reveal" not in {c["name"] for c in inspect(create_engine(url)).get_columns("quiz_quizzes")}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_servers_opening_a_new_database_at_once_make_it_once(backend, tmp_path, request):
    url = (f"sqlite:///{tmp_path / 'new.sqlite3'}" if backend == "sqlite"
           else request.getfixturevalue("postgres").new_database())
    barrier, errors = threading.Barrier(6), []

    def open_it():
        barrier.wait()
        try:
            Database(url).dispose()
        except Exception as exc:  # reported below: a thread's failure must fail the test
            errors.append(repr(exc))

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert _rows(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert _rows(url, "SELECT version FROM quiz_schema") == [(2,)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migrations_make_exactly_the_schema_the_code_declares(backend, tmp_path, request):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from pneumo_core.storage.schema import metadata

    url = (f"sqlite:///{tmp_path / 'new.sqlite3'}" if backend == "sqlite"
           else request.getfixturevalue("postgres").new_database())
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
    finally:
        database.dispose()


def test_a_server_that_cannot_be_reached_is_named_without_its_login_or_host():
    with pytest.raises(StorageError) as caught:  # .invalid never resolves (RFC 6761)
        Database("postgresql+psycopg://bob:s3cret-pw@pacs-db.invalid:5432/site")
    assert str(caught.value) == ("cannot reach the database postgresql database site: check the host in PNEUMO_DB_URL "
                                 "and that it is running")

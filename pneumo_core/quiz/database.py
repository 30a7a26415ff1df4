"""The reader-quiz database: tables, schema version, engine, and what a database failure tells the user.

Where: an embedded SQLite file in the user's data folder by default (``platformdirs``), or any
SQLAlchemy URL in ``PNEUMO_DB_URL`` (e.g. ``postgresql+psycopg://user:password@host/db``; the
password stays in the URL and is never shown). SQLite runs in WAL mode with a busy timeout, and
every write transaction starts with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of
failing. The schema is created on first use and its version recorded; a database of another
version is refused with a message. The quiz rules are in :mod:`pneumo_core.quiz.rules`.
"""
from __future__ import annotations

import functools
import os
import sqlite3
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import platformdirs
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from pneumo_core.config import SHIPPED_VARIANTS
from pneumo_core.errors import QuizError, StorageError
from pneumo_core.review.examples import score_column

SCHEMA_VERSION = 1
APP_NAME = "pneumo-workbench"
DB_FILE = "quiz.sqlite3"
CODE_LENGTH = 6
NICKNAME_MAX = 40
_WRITE = "pneumo_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)


metadata = MetaData()
schema_table = Table("quiz_schema", metadata, Column("version", Integer, primary_key=True),
                     Column("created_at", DateTime(timezone=True), nullable=False))
quizzes = Table(
    "quiz_quizzes", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(CODE_LENGTH), nullable=False, unique=True),
    Column("key_salt", LargeBinary(16), nullable=False),
    Column("key_hash", LargeBinary(32), nullable=False),
    Column("source", String(1000), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("n_films", Integer, nullable=False),
    Column("time_limit_s", Integer),
    *[Column(f"threshold_{v}", Float) for v in SHIPPED_VARIANTS],
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
)
films_table = Table(
    "quiz_films", metadata,
    Column("quiz_id", ForeignKey("quiz_quizzes.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("key", String(1000), nullable=False),
    Column("example", String(40), nullable=False),
    Column("truth", String(9), nullable=False),
    Column("subtype", String(20), nullable=False),
    *[Column(score_column(v), Float) for v in SHIPPED_VARIANTS],
)
readers = Table(
    "quiz_readers", metadata,
    Column("id", Integer, primary_key=True),
    Column("quiz_id", ForeignKey("quiz_quizzes.id"), nullable=False),
    Column("nickname", String(NICKNAME_MAX), nullable=False),
    Column("nickname_key", String(4 * NICKNAME_MAX), nullable=False),  # casefold() may lengthen a name
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("quiz_id", "nickname_key"),
)
answers = Table(
    "quiz_answers", metadata,
    Column("reader_id", ForeignKey("quiz_readers.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("answer", String(9), nullable=False),
    Column("confidence", Integer, nullable=False),
    Column("answered_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("confidence BETWEEN 1 AND 5", name="confidence_1_to_5"),
    CheckConstraint("answer IN ('NORMAL', 'PNEUMONIA')", name="answer_is_a_class"),
)
QUIZ_TABLES = {t.name for t in metadata.sorted_tables}


def default_url() -> str:
    """``PNEUMO_DB_URL``, else a SQLite file in the user's data folder."""
    return os.environ.get("PNEUMO_DB_URL") or f"sqlite:///{Path(platformdirs.user_data_dir(APP_NAME)) / DB_FILE}"


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def make_engine(url, busy_timeout_s: float):
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and BEGIN IMMEDIATE for writes."""
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below), as its docs advise
        cursor = dbapi_connection.cursor()
        for pragma in ("PRAGMA foreign_keys=ON", f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}",
                       "PRAGMA journal_mode=WAL"):
            try:
                cursor.execute(pragma)
            except sqlite3.OperationalError:
                pass  # a read-only file cannot switch to WAL; the first write says so clearly
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # IMMEDIATE takes the write lock up front, waiting up to the busy timeout; a deferred
        # transaction that reads and then writes fails at once when another writer got in between.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def guarded(method):
    """Database failures (read-only, locked, unreachable) become one-line :class:`StorageError`s."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sa_exc.OperationalError, sa_exc.DatabaseError, sa_exc.InterfaceError) as exc:
            raise StorageError(self.storage_message(exc)) from None
    return wrapper


class QuizDatabase:
    """One quiz database (``url``: a SQLAlchemy URL; default :func:`default_url`), its schema made or
    checked on opening. ``busy_timeout_s``: how long a SQLite writer waits for another's lock.
    ``clock``: returns the current UTC time (tests move it past a time limit)."""

    def __init__(self, url: str | None = None, *, busy_timeout_s: float = 10.0, clock=None):
        try:
            self.url = make_url(url or default_url())
        except sa_exc.ArgumentError:
            raise StorageError("PNEUMO_DB_URL is not a database URL (e.g. sqlite:///quiz.sqlite3 or "
                               "postgresql+psycopg://user@host/db)") from None
        self.now = clock or (lambda: datetime.now(UTC))
        try:
            self.engine = make_engine(self.url, busy_timeout_s)
        except (sa_exc.NoSuchModuleError, ModuleNotFoundError) as exc:
            raise StorageError(f"no database driver for {self.where}: {exc}") from None
        except OSError as exc:
            raise StorageError(f"cannot create the folder of the quiz database {self.where}: {exc.strerror}") from None
        try:
            self._ensure_schema()
        except QuizError:
            self.engine.dispose()  # a refused database keeps no connection open
            raise

    @property
    def where(self) -> str:
        """The database as it may be shown: a file path, or the URL without its password."""
        if self.url.get_backend_name() == "sqlite":
            return self.url.database or "(in memory)"
        return self.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        """Close every pooled connection (a server shutting down)."""
        self.engine.dispose()

    def storage_message(self, exc) -> str:
        """The one line a user sees for a database failure: what is wrong and what to do, no password."""
        text = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["unknown error"])[0]
        if self.url.password:
            text = text.replace(str(self.url.password), "***")
        low = text.lower()
        if "readonly" in low or "read-only" in low:
            return (f"the quiz database {self.where} is read-only: give this program write access to it and its "
                    "folder, or set PNEUMO_DB_URL to another database")
        if "locked" in low or "busy" in low:
            return f"the quiz database {self.where} is locked by another program; try again in a moment"
        if "unable to open" in low:
            return f"cannot open the quiz database {self.where}: check that its folder exists and is writable"
        if "not a database" in low:
            return f"{self.where} is not a SQLite database: set PNEUMO_DB_URL to another file"
        return f"the quiz database {self.where} cannot be used: {text}"

    @contextmanager
    def transaction(self, write: bool = False):
        """A connection in one transaction, committed on leaving; ``write``: it will write."""
        with self.engine.connect() as conn:
            if write:
                conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def _schema_version(self, conn) -> int | None:
        names = set(inspect(conn).get_table_names())
        if schema_table.name not in names:
            if names & QUIZ_TABLES:
                raise StorageError(f"the database {self.where} has quiz tables but no schema version: it was not "
                                   "made by this workbench; set PNEUMO_DB_URL to another database")
            return None
        version = conn.execute(select(func.max(schema_table.c.version))).scalar()
        if version is None:
            raise StorageError(f"the quiz database {self.where} records no schema version; set PNEUMO_DB_URL to "
                               "another database")
        return int(version)

    @guarded
    def _ensure_schema(self) -> None:
        # Read first: a read-only database of the right version still serves results.
        with self.transaction() as conn:
            version = self._schema_version(conn)
        if version is None:
            try:
                with self.transaction(write=True) as conn:
                    if self._schema_version(conn) is None:  # not made meanwhile by another process
                        metadata.create_all(conn)
                        conn.execute(insert(schema_table).values(version=SCHEMA_VERSION, created_at=self.now()))
                return
            except (sa_exc.IntegrityError, sa_exc.ProgrammingError):  # another server made it at the same moment
                with self.transaction() as conn:
                    version = self._schema_version(conn)
        if version != SCHEMA_VERSION:
            newer = "a newer" if version > SCHEMA_VERSION else "an older"
            raise StorageError(f"the quiz database {self.where} was made by {newer} version of the workbench "
                               f"(schema {version}; this version reads schema {SCHEMA_VERSION}): use a matching "
                               "version, or set PNEUMO_DB_URL to another database")

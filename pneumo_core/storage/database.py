"""The project's database: where it is, its engine, its schema version, and what a failure tells the user.

Where: an embedded SQLite file in the user's data folder by default (``platformdirs``; the file keeps the name
``quiz.sqlite3`` it had when it held only the quiz, so an existing one is found and upgraded), or any SQLAlchemy
URL in ``PNEUMO_DB_URL`` (e.g. ``postgresql+psycopg://user:password@host/db``). SQLite runs in WAL mode with a
busy timeout, and every write transaction starts with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of
failing. The schema is brought to the code's revision on opening (:mod:`pneumo_core.storage.migrate`); a
database of a newer release is refused with a message. Messages never show the URL's user, password or host,
nor the driver's own text (which may quote them).
"""
from __future__ import annotations

import functools
import os
import sqlite3
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import platformdirs
from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from pneumo_core.errors import StorageError

APP_NAME = "pneumo-workbench"
DB_FILE = "quiz.sqlite3"
_WRITE = "pneumo_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)


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


class Database:
    """The project's database (``url``: a SQLAlchemy URL; default :func:`default_url`), its schema brought to
    this release's revision on opening. ``busy_timeout_s``: how long a SQLite writer waits for another's lock.
    ``clock``: returns the current UTC time (tests move it)."""

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
            raise StorageError(f"no database driver for {self.where}: {type(exc).__name__}; install the "
                               "driver named in the URL (PostgreSQL: psycopg)") from None
        except OSError as exc:
            raise StorageError(f"cannot create the folder of the database {self.where}: {exc.strerror}") from None
        try:
            self._migrate()
        except Exception:
            self.engine.dispose()  # a refused database keeps no connection open
            raise

    @property
    def where(self) -> str:
        """The database as it may be shown: a SQLite file's path, else the backend and database name only
        (no user, password, host or port: a shown URL leaks where the server is and who logs in)."""
        if self.url.get_backend_name() == "sqlite":
            return self.url.database or "(in memory)"
        return f"{self.url.get_backend_name()} database {self.url.database or '(default)'}"

    def dispose(self) -> None:
        """Close every pooled connection (a server shutting down)."""
        self.engine.dispose()

    def storage_message(self, exc) -> str:
        """The one line a user sees for a database failure: what is wrong and what to do. The driver's text is
        only matched, never shown: it may quote the host, the user or the statement."""
        low = str(getattr(exc, "orig", None) or exc).lower()
        if "append-only" in low:
            return "the audit trail is append-only: its events cannot be changed or deleted"
        if "readonly" in low or "read-only" in low:
            return (f"the database {self.where} is read-only: give this program write access to it and its "
                    "folder, or set PNEUMO_DB_URL to another database")
        if "locked" in low or "busy" in low:
            return f"the database {self.where} is locked by another program; try again in a moment"
        if "unable to open" in low:
            return f"cannot open the database {self.where}: check that its folder exists and is writable"
        if "not a database" in low:
            return f"{self.where} is not a SQLite database: set PNEUMO_DB_URL to another file"
        if "password" in low or "authentication" in low or ("role" in low and "does not exist" in low):
            return f"the database {self.where} refused the login: check the user and password in PNEUMO_DB_URL"
        if any(words in low for words in ("connect", "resolve host", "translate host", "timeout", "timed out")):
            return f"cannot reach the database {self.where}: check the host in PNEUMO_DB_URL and that it is running"
        return (f"the database {self.where} cannot be used ({type(getattr(exc, 'orig', None) or exc).__name__}); "
                "check PNEUMO_DB_URL")

    @contextmanager
    def transaction(self, write: bool = False):
        """A connection in one transaction, committed on leaving; ``write``: it will write."""
        with self.engine.connect() as conn:
            if write:
                conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    @guarded
    def _migrate(self) -> None:
        from pneumo_core.storage.migrate import upgrade  # Alembic is imported only when a database opens

        upgrade(self)

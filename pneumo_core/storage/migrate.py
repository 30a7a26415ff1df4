"""Bringing a database to this release's schema with Alembic, run in code on opening (no alembic.ini needed).

A database made before Alembic (the quiz-only release: ``quiz_schema`` version 1, no ``alembic_version``) is
recognised and stamped ``0001``, then upgraded; a database at a revision this code does not know (a newer
release) is refused. An up-to-date database is only read, so a read-only one still serves. Upgrades run in one
write transaction, serialised between processes (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock).
"""
from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select

from pneumo_core.errors import StorageError
from pneumo_core.storage.schema import QUIZ_TABLES, schema_table

MIGRATIONS = Path(__file__).with_name("migrations")
PRE_ALEMBIC_REVISION = "0001"  # the schema of the quiz-only release, quiz_schema version 1
_PRE_ALEMBIC = "pre-alembic"  # what _state says of such a database, not yet stamped
_PG_LOCK = 0x706E65756D6F  # pg_advisory_xact_lock key: any constant, the same for every process


def alembic_config(connection=None) -> Config:
    """Alembic's configuration for the project's migrations; ``connection``: the one to migrate."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The revision this code's schema is at."""
    return _script().get_current_head()


def _state(db, conn) -> str | None:
    """The database's revision; _PRE_ALEMBIC for a quiz database made before Alembic; None when empty.
    Refuses what this code cannot read."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is not None:
        if revision not in {script.revision for script in _script().walk_revisions()}:
            raise StorageError(f"the database {db.where} was made by a newer version of the workbench (schema "
                               f"revision {revision}; this version knows up to {head_revision()}): use that "
                               "version, or set PNEUMO_DB_URL to another database")
        return revision
    names = set(inspect(conn).get_table_names())
    if schema_table.name not in names:
        if names & QUIZ_TABLES:
            raise StorageError(f"the database {db.where} has quiz tables but no schema version: it was not made "
                               "by this workbench; set PNEUMO_DB_URL to another database")
        return None
    version = conn.execute(select(func.max(schema_table.c.version))).scalar()
    if version != 1:  # 2 and up are only ever written together with alembic_version
        raise StorageError(f"the database {db.where} records quiz schema {version} without a migration history: "
                           "it was not made by this workbench; set PNEUMO_DB_URL to another database")
    return _PRE_ALEMBIC


def upgrade(db) -> None:
    """Bring ``db`` (a :class:`~pneumo_core.storage.database.Database`) to :func:`head_revision`."""
    head = head_revision()
    with db.transaction() as conn:  # read first: a read-only database at head still serves
        if _state(db, conn) == head:
            return
    with db.transaction(write=True) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
        config = alembic_config(conn)
        if _state(db, conn) == _PRE_ALEMBIC:  # read again: another process may have upgraded it meanwhile
            command.stamp(config, PRE_ALEMBIC_REVISION)
        command.upgrade(config, "head")

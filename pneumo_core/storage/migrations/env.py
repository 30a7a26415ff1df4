"""Alembic's environment: migrate the connection handed over in code, or the URL of PNEUMO_DB_URL / the default
database when run from the ``alembic`` command line (docs/design.md, "Database and migrations")."""
from __future__ import annotations

from alembic import context

from pneumo_core.storage.schema import metadata


def _run(connection) -> None:
    # render_as_batch: SQLite alters a table by copying it; transaction_per_migration off: the caller's
    # transaction holds every step, so a failed upgrade leaves the database as it was.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # the alembic command line: its own engine, same SQLite settings as the workbench
    from sqlalchemy.engine import make_url

    from pneumo_core.storage.database import default_url, make_engine

    engine = make_engine(make_url(context.config.get_main_option("sqlalchemy.url") or default_url()), 10.0)
    with engine.connect() as cli_connection:
        _run(cli_connection)
        cli_connection.commit()
    engine.dispose()

"""Alembic environment: the URL comes from `worker.migrate`, never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from worker.db import make_engine
from worker.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.attributes["url"])
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()

"""Engine and session set-up that behaves the same on SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, DateTime, Engine, Select, Table, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend.

    SQLite has no timezone-aware type, so values are stored as naive UTC there and
    re-tagged on the way out; PostgreSQL uses timestamptz.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use the Clock (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the worker writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# The database and the files SQLite keeps beside it hold every recipient's address and
# letter: readable by the account running Thankly only.
_SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def _private_sqlite_files(database: Path) -> None:
    """Create the database file as 0600 before SQLite does (it would use the umask, often
    0644), and close up files an older version left readable. SQLite gives the -wal and
    -shm files it creates later the database file's mode."""
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in _SQLITE_SIDE_FILES:
        path = Path(f"{database}{suffix}")
        try:
            info = path.stat()
            if info.st_mode & 0o077 and info.st_uid == os.getuid():
                path.chmod(0o600)
        except FileNotFoundError:
            continue


# A pooled PostgreSQL connection older than this is replaced rather than reused, so one
# closed by a server or a firewall's idle timeout is rarely met.
POOL_RECYCLE_SECONDS = 1800


def make_engine(url: str, *, pre_ping: bool = True) -> Engine:
    """pre_ping: test each connection with a round trip when it is taken from the pool.
    The worker turns it off (two checkouts per letter) and instead retries the one write
    that must not be lost to a dead connection (see `delivery.send`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_sqlite_files(Path(parsed.database))
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, future=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=pre_ping, pool_recycle=POOL_RECYCLE_SECONDS, future=True
    )


def insert_or_skip(bind: Session | Connection, table: Any) -> Any:
    """`INSERT` that can take `.on_conflict_do_nothing(...)`: PostgreSQL's and SQLite's
    share the clause, each in its own dialect module."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect
    return (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def indexed_by(query: _Query, table: Any, index: str) -> _Query:
    """`query` reading `table` through `index` on SQLite, statistics or not.

    The sweeps look for a rare status (pending inbox rows, queued letters, …) in a table
    mostly of others. Once ANALYZE (or PRAGMA optimize) has run, SQLite knows how few
    distinct statuses there are but not which is rare (the status is a bound parameter),
    so it reads the whole table instead of the (status, …) index, in the time the
    backlog takes. INDEXED BY keeps the index (and fails loudly if it is ever dropped).
    PostgreSQL keeps per-value statistics and plans its own way: no hint there."""
    return query.with_hint(table, f"INDEXED BY {index}", dialect_name="sqlite")


@compiles(Table, "sqlite")
def _table_with_hint(table: Table, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLAlchemy's SQLite dialect drops `with_hint` hints without a word; render them
    after the table's name in FROM, where SQLite takes INDEXED BY."""
    rendered: str = compiler.visit_table(table, **kw)  # type: ignore[no-untyped-call]
    hint = (kw.get("fromhints") or {}).get(table)
    return f"{rendered} {hint}" if hint and rendered else rendered

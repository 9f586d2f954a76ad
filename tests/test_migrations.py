"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from worker.migrate import is_current, upgrade
from worker.models import Base


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert is_current(engine)
    finally:
        engine.dispose()


def test_upgrade_creates_a_fresh_database_and_is_repeatable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'fresh.db'}"
    upgrade(url)
    upgrade(url)  # a second `thankly db upgrade` is a no-op, not an error
    engine = create_engine(url)
    assert {"inbox", "events", "letters", "attempts"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_letters_have_the_index_the_scheduler_tick_needs(db_url: str) -> None:
    engine = create_engine(db_url)
    indexes = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("letters")}
    engine.dispose()
    assert ("status", "due_at") in indexes

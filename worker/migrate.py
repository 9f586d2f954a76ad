"""`thankly db upgrade` and the schema checks the tests use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations
from worker.db import make_engine


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["url"] = url
    return config


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did, for the one line `thankly db upgrade` prints."""

    before: str | None  # None: the database had no Thankly schema
    after: str | None

    def describe(self, where: str) -> str:
        if self.before is None:
            return f"created the schema (revision {self.after}) in {where}"
        if self.before == self.after:
            return f"the schema in {where} was up to date (revision {self.after})"
        return f"upgraded the schema in {where} from revision {self.before} to {self.after}"


def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()
    return ", ".join(sorted(heads)) or None


def upgrade(url: str, revision: str = "head") -> Upgrade:
    before = current_revision(url)
    command.upgrade(alembic_config(url), revision)
    return Upgrade(before, current_revision(url))


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration."""
    heads = set(ScriptDirectory.from_config(alembic_config(str(engine.url))).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads

"""Schema migrations (Alembic), run from the CLI, at `serve` start, and by the tests."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

import event_collector.models  # noqa: F401  (registers every table on the metadata)
from event_collector.kit.db import Database, metadata


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "event_collector:migrations")
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(db: Database, revision: str = "head") -> None:
    def _upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with db.write() as conn:
        await conn.run_sync(_upgrade)


async def downgrade(db: Database, revision: str) -> None:
    def _downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with db.write() as conn:
        await conn.run_sync(_downgrade)


async def current_revision(db: Database) -> str | None:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.read() as conn:
        return await conn.run_sync(_current)


async def schema_drift(db: Database) -> list[Any]:
    """Differences between the tables the code declares and the migrated database."""

    def _compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with db.read() as conn:
        return await conn.run_sync(_compare)

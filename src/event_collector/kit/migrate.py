"""Schema migrations (Alembic), run from the CLI, at `serve` start, and by the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData

from event_collector.kit.db import Database


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "event_collector:migrations")
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _run(db: Database, alembic_command: Callable[[Config, str], None], rev: str) -> None:
    def _in_transaction(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        alembic_command(config, rev)

    async with db.write() as conn:
        await conn.run_sync(_in_transaction)


async def upgrade(db: Database, revision: str = "head") -> None:
    await _run(db, command.upgrade, revision)


async def downgrade(db: Database, revision: str) -> None:
    await _run(db, command.downgrade, revision)


async def current_revision(db: Database) -> str | None:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.read() as conn:
        return await conn.run_sync(_current)


async def schema_drift(db: Database, declared: MetaData) -> list[Any]:
    """Differences between the tables ``declared`` (the models' metadata) and the migrated
    database."""

    def _compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, declared))

    async with db.read() as conn:
        return await conn.run_sync(_compare)

"""Schema migrations (Alembic), run from the CLI, at `serve` start, and by the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, String, column, inspect, select, table

from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database

VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "event_collector:migrations")
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _run(
    db: Database,
    alembic_command: Callable[[Config, str], None],
    rev: str,
    secrets: SecretBox | None,
) -> None:
    def _in_transaction(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        # Migrations that (re)seal secrets at rest use it (else the settings' key directory).
        config.attributes["secrets"] = secrets
        alembic_command(config, rev)

    async with db.write() as conn:
        await conn.run_sync(_in_transaction)


async def upgrade(
    db: Database, revision: str = "head", *, secrets: SecretBox | None = None
) -> None:
    await _run(db, command.upgrade, revision, secrets)


async def downgrade(db: Database, revision: str, *, secrets: SecretBox | None = None) -> None:
    await _run(db, command.downgrade, revision, secrets)


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (None: never migrated). Read from Alembic's version table
    directly: a MigrationContext logs two INFO lines each time, and readiness probes ask often."""

    def _current(connection: Connection) -> str | None:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        version_num = column("version_num", String)
        revisions: list[str] = list(
            connection.execute(select(version_num).select_from(table(VERSION_TABLE))).scalars()
        )
        if len(revisions) > 1:
            raise RuntimeError(f"the database has several schema heads: {revisions}")
        return revisions[0] if revisions else None

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

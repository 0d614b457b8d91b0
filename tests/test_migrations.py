"""Migrations build the schema from nothing on both engines, and agree with the models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from sqlalchemy import inspect

import event_collector.models  # noqa: F401  (registers every table on the metadata)
from event_collector.kit import migrate
from event_collector.kit.db import Database, metadata
from tests.conftest import make_settings


@pytest_asyncio.fixture
async def empty_db(empty_database_url: str, key_dir: Path) -> AsyncIterator[Database]:
    db = Database.from_settings(make_settings(empty_database_url, key_dir))
    yield db
    await db.dispose()


async def _tables(db: Database) -> set[str]:
    async with db.read() as conn:
        return await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))


async def test_migrations_build_the_schema_from_nothing(empty_db: Database) -> None:
    assert await migrate.current_revision(empty_db) is None
    await migrate.upgrade(empty_db)
    assert await migrate.current_revision(empty_db) == migrate.head_revision()
    assert set(metadata.tables) <= await _tables(empty_db)
    # `alembic check`: the models and the migrated schema agree.
    assert await migrate.schema_drift(empty_db, metadata) == []
    await migrate.upgrade(empty_db)  # a second run is a no-op
    assert await migrate.current_revision(empty_db) == migrate.head_revision()


async def test_downgrade_to_base_and_up_again(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)
    await migrate.downgrade(empty_db, "base")
    assert await migrate.current_revision(empty_db) is None
    assert not set(metadata.tables) & await _tables(empty_db)
    await migrate.upgrade(empty_db)
    assert await migrate.schema_drift(empty_db, metadata) == []

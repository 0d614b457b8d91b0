"""The statement timeout and the line between "the database is unavailable" (503) and "the
statement was wrong" (not a 503), on the real databases."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from event_collector.kit.db import Database
from event_collector.kit.errors import DatabaseUnavailable
from tests.conftest import make_settings


@pytest.fixture
async def short_db(backend: str, database_url: str, tmp_path: Path) -> Database:
    if backend != "postgres":
        pytest.skip("statements are bounded on PostgreSQL (SQLite's timeout is its busy timeout)")
    settings = make_settings(
        database_url, tmp_path, database_statement_timeout=0.5, database_bulk_statement_timeout=5
    )
    return Database.from_settings(settings)


async def test_a_statement_over_the_timeout_is_a_503_and_the_connection_survives(
    short_db: Database,
) -> None:
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as raised:
            async with short_db.read() as conn:
                await conn.execute(text("SELECT pg_sleep(3)"))
        assert time.monotonic() - started < 2.5
        assert not raised.value.stale_connection  # a timeout: trying again would only wait
        async with short_db.read() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
        # A bulk read has its own, longer bound.
        async with short_db.read(bulk=True) as conn:
            assert await conn.scalar(text("SELECT 1 FROM pg_sleep(1)")) == 1
    finally:
        await short_db.dispose()


async def test_a_wrong_statement_is_not_an_outage(short_db: Database) -> None:
    try:
        with pytest.raises(IntegrityError):
            await _run(
                short_db,
                "CREATE TEMP TABLE t (id int PRIMARY KEY)",
                "INSERT INTO t VALUES (1), (1)",
            )
        with pytest.raises(DBAPIError) as raised:  # asyncpg's DataError: a value out of range
            async with short_db.read() as conn:
                await conn.execute(text("SELECT CAST(:n AS int)"), {"n": 1 << 70})
        assert not isinstance(raised.value, DatabaseUnavailable)
    finally:
        await short_db.dispose()


async def _run(db: Database, *statements: str) -> None:
    async with db.write() as conn:
        for statement in statements:
            await conn.execute(text(statement))

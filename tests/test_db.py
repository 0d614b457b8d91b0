"""kit.db on PostgreSQL: connections are handed out alive without a ping per use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from sqlalchemy import text

from event_collector.kit.db import Database
from event_collector.kit.db import engine as kit_db_engine
from event_collector.kit.settings import Settings
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, wait_until
from tests.factories import event_body


async def test_a_connection_the_server_closed_is_replaced_at_checkout(
    backend: str, settings: Settings
) -> None:
    if backend != "postgres":
        pytest.skip("server-side connection loss is a PostgreSQL matter")
    db = Database.from_settings(settings)
    try:
        async with db.read() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
            driver = (await conn.get_raw_connection()).driver_connection
        admin = await asyncpg.connect(_plain_url(db))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await wait_until(driver.is_closed, "the driver sees the socket close")
        async with db.read() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await db.dispose()


@pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "not-yet-noticed"])
async def test_the_ingest_writer_replaces_a_connection_the_server_closed(
    backend: str, client, tenant: TenantFixture, context: Runtime, noticed: bool
) -> None:
    if backend != "postgres":
        pytest.skip("server-side connection loss is a PostgreSQL matter")
    first = await client.post("/api/v1/events", json=event_body(), headers=tenant.headers)
    assert first.status_code == 201, first.text
    admin = await asyncpg.connect(_plain_url(context.db))
    try:
        # Every other connection to this database: the writer's kept ones among them.
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert terminated >= 1
    kept = [conn for conn, _ in context.db._writer_connections]
    assert kept, "the writer kept no connection to lose"
    if noticed:
        # Whether the driver has read the server's goodbye yet or not, the next write succeeds.
        await wait_until(
            lambda: all(c.sync_connection.connection.driver_connection.is_closed() for c in kept),
            "the driver sees the sockets close",
        )
    again = await client.post("/api/v1/events", json=event_body(), headers=tenant.headers)
    assert again.status_code == 201, again.text


def _plain_url(db: Database) -> str:
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Clock:
    """Stands in for kit.db's monotonic clock: idleness without waiting for it."""

    now: float = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def sit_idle(self) -> None:
        self.now += kit_db_engine.PING_AFTER_IDLE_SECONDS + 1


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(kit_db_engine, "time", fake)
    return fake


@pytest.fixture
async def postgres_db(backend: str, settings: Settings) -> AsyncIterator[Database]:
    if backend != "postgres":
        pytest.skip("SQLite connections are neither pinged nor renewed")
    db = Database.from_settings(settings)
    yield db
    await db.dispose()


async def test_only_a_pooled_connection_that_sat_idle_is_pinged(
    clock: Clock, postgres_db: Database
) -> None:
    db = postgres_db
    queries: list[str] = []
    async with db.read() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        raw.add_query_logger(lambda record: queries.append(record.query))
    async with db.read() as conn:
        await conn.execute(text("SELECT 1"))
    assert ";" not in queries, "a connection in use was pinged"
    clock.sit_idle()
    async with db.read() as conn:
        await conn.execute(text("SELECT 1"))
    assert ";" in queries, "an idle connection was not pinged"


async def test_the_writer_keeps_its_connection_while_busy_and_renews_it_after_idling(
    clock: Clock, postgres_db: Database
) -> None:
    async def writer_backend() -> int:
        async with postgres_db.write_inline() as conn:
            pid: int = await conn.scalar(text("SELECT pg_backend_pid()"))
            return pid

    first = await writer_backend()
    assert await writer_backend() == first
    clock.sit_idle()
    assert await writer_backend() != first

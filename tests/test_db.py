"""kit.db on PostgreSQL: connections are handed out alive without a ping per use."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from event_collector.context import AppContext
from event_collector.kit.db import Database
from event_collector.kit.settings import Settings
from tests.conftest import TenantFixture
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
        admin = await asyncpg.connect(_plain_url(db))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # the driver sees the socket close
        async with db.read() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await db.dispose()


async def test_the_ingest_writer_replaces_a_connection_the_server_closed(
    backend: str, client, tenant: TenantFixture, context: AppContext
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
    await asyncio.sleep(0.2)  # the driver sees the sockets close
    again = await client.post("/api/v1/events", json=event_body(), headers=tenant.headers)
    assert again.status_code == 201, again.text


def _plain_url(db: Database) -> str:
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

"""kit.db on PostgreSQL: pooled connections are handed out alive without a ping per checkout."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from event_collector.kit.db import Database
from event_collector.kit.settings import Settings


async def test_a_connection_the_server_closed_is_replaced_at_checkout(
    backend: str, settings: Settings
) -> None:
    if backend != "postgres":
        pytest.skip("server-side connection loss is a PostgreSQL matter")
    db = Database.from_settings(settings)
    try:
        async with db.read() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        admin = await asyncpg.connect(
            db.engine.url.set(drivername="postgresql").render_as_string(False)
        )
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # the driver sees the socket close
        async with db.read() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await db.dispose()

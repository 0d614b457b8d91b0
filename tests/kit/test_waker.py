"""kit.waker: in-process wakes, timed wakes, and NOTIFY from another transaction."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from event_collector.kit.waker import Waker, notify
from event_collector.runtime import Runtime


async def test_a_wake_while_busy_is_not_lost(context: Runtime) -> None:
    waker = Waker(context.db, "kit_waker_test")
    waker.wake()
    started = time.monotonic()
    assert await waker.wait(30) is True
    assert time.monotonic() - started < 5
    # The wake was consumed: the next wait runs to its timeout.
    assert await waker.wait(0.05) is False


async def test_wake_from_another_task_ends_the_wait(context: Runtime) -> None:
    waker = Waker(context.db, "kit_waker_test")
    asyncio.get_running_loop().call_later(0.05, waker.wake)
    started = time.monotonic()
    assert await waker.wait(30) is True
    assert time.monotonic() - started < 5


async def test_notify_in_a_committed_transaction_wakes_a_listener(
    context: Runtime, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("LISTEN/NOTIFY crosses processes on PostgreSQL; SQLite has one process")
    channel = f"kit_waker_{uuid.uuid4().hex[:8]}"
    waker = Waker(context.db, channel)
    await waker.start()
    try:
        async with asyncio.timeout(10):
            await waker.listening.wait()
        await waker.wait(0)  # the catch-up wake of a fresh LISTEN
        async with context.db.write() as conn:
            await notify(conn, channel)
        assert await waker.wait(10) is True
        assert waker.notifications == 1
    finally:
        await waker.stop()
    assert not waker.listening.is_set()


async def test_notify_is_harmless_without_listen_on_sqlite(context: Runtime, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the SQLite half of notify")
    waker = Waker(context.db, "kit_waker_test")
    await waker.start()  # nothing to listen to: one process
    async with context.db.write() as conn:
        await notify(conn, "kit_waker_test")
    assert waker.notifications == 0
    assert not waker.listening.is_set()
    await waker.stop()

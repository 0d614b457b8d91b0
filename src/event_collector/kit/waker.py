"""Waking a worker loop: in process, across processes, and on time.

A worker (the delivery dispatcher, the job scheduler) sleeps until it has work. Work appears in
three ways, and a :class:`Waker` answers all of them with one ``wait``:

* in this process: whoever committed the work calls :meth:`Waker.wake` after the commit;
* in another process on the same PostgreSQL database: the committing transaction runs
  :func:`notify` on the worker's channel, and every waker LISTENing on it wakes (on SQLite there
  is only one process, so nothing is sent);
* on time: the worker knows when its next piece of work falls due and waits at most that long.

The LISTEN connection is the waker's own; when it drops, the waker reconnects and wakes its
worker once, so that anything announced while it was away is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from event_collector.kit.db import AnyConnection, Database, backend_of

logger = logging.getLogger(__name__)

RECONNECT_DELAY_SECONDS = 2.0


async def notify(conn: AnyConnection, channel: str) -> None:
    """Announce work on ``channel`` when ``conn``'s transaction commits (PostgreSQL only)."""
    await backend_of(conn).notify(conn, channel)


class Waker:
    def __init__(
        self,
        db: Database,
        channel: str,
        *,
        reconnect_delay: float = RECONNECT_DELAY_SECONDS,
    ) -> None:
        self._db = db
        self.channel = channel
        self._reconnect_delay = reconnect_delay
        self._event = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False
        self.notifications = 0  # NOTIFYs received (observability, tests)
        self.listening = asyncio.Event()  # set while the LISTEN connection is up

    def wake(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """Sleep until woken or ``seconds`` pass; True when woken.

        A wake that came while the worker was busy is not lost: the next wait returns at once.
        """
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=max(seconds, 0.0))
        woken = self._event.is_set()
        self._event.clear()
        return woken

    async def start(self) -> None:
        self._stopping = False
        if self._db.backend.listens and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name=f"listen-{self.channel}")

    async def stop(self) -> None:
        self._stopping = True
        self._event.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    async def _listen(self) -> None:
        dsn = self._db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stopping:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _conn, event=closed: event.set())
                await conn.add_listener(self.channel, self._on_notify)
                self.listening.set()
                self.wake()  # catch up on anything announced while we were not listening
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("LISTEN %s failed (%s); retrying", self.channel, type(exc).__name__)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(self._reconnect_delay)

    def _on_notify(self, *_args: Any) -> None:
        self.notifications += 1
        self._event.set()

    def __repr__(self) -> str:  # pragma: no cover
        return f"<Waker {self.channel}>"

"""Leases: how workers share a table of work without stepping on each other.

A row of work (a delivery, a job run) is *leased* by writing the worker's owner id and an
expiry time on it. While the lease holds, no other worker takes the row; a worker that dies
stops renewing, its leases expire, and the rows are claimed again (at-least-once). On
PostgreSQL candidate rows are locked ``FOR UPDATE SKIP LOCKED``, so concurrent claimers take
disjoint rows without waiting for each other; on SQLite writes are serial (the caller claims
inside ``Database.write``), and the same statement compiles without the locking clause.

The caller's transaction decides when a claim becomes visible: claim inside a write
transaction and commit before acting on the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, or_, select, true, update

from event_collector.kit.db import AnyConnection, Database, backend_of, utcnow

logger = logging.getLogger(__name__)


def new_owner() -> str:
    """A lease owner id that tells operators which process holds a row."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeasedTable:
    """A table whose rows can be leased, and the names of its id and lease columns."""

    table: Table
    id_column: str = "id"
    owner_column: str = "lease_owner"
    until_column: str = "lease_until"

    @property
    def id(self) -> Any:
        return self.table.c[self.id_column]

    @property
    def owner(self) -> Any:
        return self.table.c[self.owner_column]

    @property
    def until(self) -> Any:
        return self.table.c[self.until_column]

    def is_free(self, now: datetime) -> ColumnElement[bool]:
        return or_(self.owner.is_(None), self.until.is_(None), self.until < now)


async def claim(
    conn: AnyConnection,
    leased: LeasedTable,
    *,
    owner: str,
    until: datetime,
    now: datetime,
    where: ColumnElement[bool] | None = None,
    order_by: Sequence[Any] = (),
    limit: int,
) -> list[Row[Any]]:
    """Lease up to ``limit`` rows matching ``where`` whose lease is free or expired.

    ``order_by`` chooses which rows are taken first; the returned rows come in no set order.
    """
    candidates = backend_of(conn).skip_locked(
        select(leased.id)
        .where(where if where is not None else true(), leased.is_free(now))
        .order_by(*order_by)
        .limit(limit)
    )
    statement = (
        update(leased.table)
        .where(leased.id.in_(candidates.scalar_subquery()))
        .values({leased.owner: owner, leased.until: until})
        .returning(*leased.table.c)
    )
    return list((await conn.execute(statement)).all())


async def renew(
    conn: AnyConnection,
    leased: LeasedTable,
    *,
    owner: str,
    ids: Iterable[Any],
    until: datetime,
    still: ColumnElement[bool] | None = None,
) -> int:
    """Extend this owner's leases on ``ids`` (those still matching ``still``); returns how many."""
    ids = list(ids)
    if not ids:
        return 0
    mine = select(leased.id).where(
        leased.id.in_(ids), leased.owner == owner, still if still is not None else true()
    )
    # A row locked by a transaction finishing it is done: waiting for it would only queue
    # behind (or deadlock with) that transaction.
    mine = backend_of(conn).skip_locked(mine)
    result = await conn.execute(
        update(leased.table)
        .where(leased.id.in_(mine.scalar_subquery()))
        .values({leased.until: until})
    )
    return int(result.rowcount or 0)


async def release(
    conn: AnyConnection, leased: LeasedTable, *, owner: str, ids: Iterable[Any]
) -> None:
    """Give rows back untouched, so another worker can take them at once."""
    ids = list(ids)
    if ids:
        await conn.execute(
            update(leased.table)
            .where(leased.id.in_(ids), leased.owner == owner)
            .values({leased.owner: None, leased.until: None})
        )


@dataclass
class LeaseKeeper:
    """Renews the leases this process holds, every third of the lease, until dropped.

    A renewal that fails (database away) is logged and tried again next round; if the database
    stays away longer than the lease, other workers may take the rows over, which at-least-once
    processing allows.
    """

    db: Database
    leased: LeasedTable
    owner: str
    lease_seconds: float
    still: ColumnElement[bool] | None = None
    held: set[Any] = field(default_factory=set)
    renewals: int = 0  # rounds that renewed something (observability, tests)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def hold(self, ids: Iterable[Any]) -> None:
        self.held.update(ids)

    def drop(self, ids: Iterable[Any]) -> None:
        self.held.difference_update(ids)

    def lease_until(self) -> datetime:
        return utcnow() + timedelta(seconds=self.lease_seconds)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lease-keeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def renew_now(self) -> None:
        if not self.held:
            return
        async with self.db.write() as conn:
            await renew(
                conn,
                self.leased,
                owner=self.owner,
                ids=sorted(self.held),
                until=self.lease_until(),
                still=self.still,
            )
        self.renewals += 1

    async def _run(self) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew_now()
            except Exception:
                logger.warning(
                    "renewing leases on %s failed", self.leased.table.name, exc_info=True
                )

"""kit.leases on both databases: claims are disjoint, expire, renew and release."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest_asyncio
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from event_collector.kit import leases
from event_collector.kit.db import Database, UTCDateTime, utcnow
from event_collector.runtime import Runtime

_metadata = MetaData()
work_table = Table(
    "kit_lease_test_work",
    _metadata,
    Column("id", String(64), primary_key=True),
    Column("batch", String(64), nullable=False),
    Column("position", Integer, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
)
WORK = leases.LeasedTable(work_table)


@pytest_asyncio.fixture
async def db(context: Runtime) -> Database:
    async with context.db.write() as conn:
        await conn.run_sync(_metadata.create_all)
    return context.db


@pytest_asyncio.fixture
async def batch(db: Database) -> AsyncIterator[str]:
    """Ten free rows of work, tagged with a batch name only this test uses."""
    name = uuid.uuid4().hex
    async with db.write() as conn:
        await conn.execute(
            insert(work_table),
            [{"id": f"{name}-{i}", "batch": name, "position": i} for i in range(10)],
        )
    yield name


async def _claim(
    db: Database, batch: str, owner: str, limit: int, *, now: datetime | None = None
) -> list[str]:
    now = now or utcnow()
    async with db.write() as conn:
        rows = await leases.claim(
            conn,
            WORK,
            owner=owner,
            now=now,
            until=now + timedelta(seconds=30),
            where=work_table.c.batch == batch,
            order_by=[work_table.c.position],
            limit=limit,
        )
    return [row.id for row in rows]


async def _owners(db: Database, batch: str) -> dict[str, str | None]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(work_table.c.id, work_table.c.lease_owner).where(work_table.c.batch == batch)
        )
        return {row.id: row.lease_owner for row in rows}


async def test_claim_takes_free_rows_in_order_up_to_the_limit(db: Database, batch: str) -> None:
    first = await _claim(db, batch, "a", 4)
    assert sorted(first) == [f"{batch}-{i}" for i in range(4)]
    second = await _claim(db, batch, "b", 4)
    assert sorted(second) == [f"{batch}-{i}" for i in range(4, 8)]
    owners = await _owners(db, batch)
    assert [owners[f"{batch}-{i}"] for i in range(10)] == ["a"] * 4 + ["b"] * 4 + [None] * 2


async def test_concurrent_claimers_take_disjoint_rows(db: Database, batch: str) -> None:
    results = await asyncio.gather(*(_claim(db, batch, f"w{i}", 3) for i in range(4)))
    taken = [row for rows in results for row in rows]
    assert len(taken) == len(set(taken)) == 10
    owners = await _owners(db, batch)
    assert all(owner is not None for owner in owners.values())


async def test_an_expired_lease_is_claimed_again(db: Database, batch: str) -> None:
    await _claim(db, batch, "dead", 10)
    assert await _claim(db, batch, "alive", 10) == []
    later = utcnow() + timedelta(seconds=31)
    assert len(await _claim(db, batch, "alive", 10, now=later)) == 10
    assert set((await _owners(db, batch)).values()) == {"alive"}


async def test_release_gives_only_the_owners_rows_back(db: Database, batch: str) -> None:
    mine = await _claim(db, batch, "a", 5)
    theirs = await _claim(db, batch, "b", 5)
    async with db.write() as conn:
        await leases.release(conn, WORK, owner="a", ids=mine + theirs)
    owners = await _owners(db, batch)
    assert {owners[i] for i in mine} == {None}
    assert {owners[i] for i in theirs} == {"b"}
    assert sorted(await _claim(db, batch, "c", 10)) == sorted(mine)


async def test_renew_extends_only_the_owners_matching_leases(db: Database, batch: str) -> None:
    mine = sorted(await _claim(db, batch, "a", 5))
    theirs = await _claim(db, batch, "b", 5)
    until = utcnow() + timedelta(hours=1)
    async with db.write() as conn:
        renewed = await leases.renew(
            conn,
            WORK,
            owner="a",
            ids=mine + theirs,
            until=until,
            still=work_table.c.position < 3,
        )
    assert renewed == 3
    async with db.read() as conn:
        rows = {
            row.id: row.lease_until
            for row in await conn.execute(
                select(work_table.c.id, work_table.c.lease_until).where(work_table.c.batch == batch)
            )
        }
    assert [rows[i] == until for i in mine] == [True, True, True, False, False]
    assert not any(rows[i] == until for i in theirs)


async def test_lease_keeper_renews_what_it_holds_until_dropped(db: Database, batch: str) -> None:
    ids = await _claim(db, batch, "keeper", 2)
    keeper = leases.LeaseKeeper(db, WORK, owner="keeper", lease_seconds=0.3)
    keeper.hold(ids)
    await keeper.start()
    try:
        async with asyncio.timeout(10):
            while keeper.renewals < 2:  # noqa: ASYNC110 (a bounded wait on a counter)
                await asyncio.sleep(0.02)
    finally:
        await keeper.stop()
    async with db.read() as conn:
        untils = (
            await conn.scalars(select(work_table.c.lease_until).where(work_table.c.id.in_(ids)))
        ).all()
    # Claimed for 30 s; the keeper's renewals set 0.3 s leases.
    assert all(until < utcnow() + timedelta(seconds=5) for until in untils)
    keeper.drop(ids)
    assert keeper.held == set()
    assert leases.new_owner().count(":") == 2

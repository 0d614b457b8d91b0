"""The ordered event feed (issue 13 item 7): a cursor on every page, and tailing with it sees
every event exactly once on PostgreSQL too, where transactions commit out of arrival order."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select

from event_collector.models import event_table
from tests.factories import event_body
from tests.test_serve import _free_port

FEED = "/api/v1/events"


async def _page(client: httpx.AsyncClient, tenant, **params: Any) -> dict[str, Any]:
    response = await client.get(FEED, params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _post(client: httpx.AsyncClient, tenant, body: dict[str, Any]) -> None:
    response = await client.post(FEED, json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text


async def test_every_page_has_a_cursor_the_live_edge_too(client, tenant) -> None:
    empty = await _page(client, tenant)
    assert empty["items"] == []
    assert empty["has_more"] is False
    start = empty["next_cursor"]
    assert start

    first, second = event_body(), event_body()
    await _post(client, tenant, first)
    await _post(client, tenant, second)
    page = await _page(client, tenant, cursor=start, limit=1)
    assert [item["id"] for item in page["items"]] == [first["id"]]
    assert page["has_more"] is True
    last = await _page(client, tenant, cursor=page["next_cursor"], limit=1)
    assert [item["id"] for item in last["items"]] == [second["id"]]
    assert last["has_more"] is False
    # At the live edge: nothing new, and the cursor stays where it was.
    edge = await _page(client, tenant, cursor=last["next_cursor"])
    assert edge["items"] == []
    assert edge["next_cursor"] == last["next_cursor"]
    third = event_body()
    await _post(client, tenant, third)
    tail = await _page(client, tenant, cursor=edge["next_cursor"])
    assert [item["id"] for item in tail["items"]] == [third["id"]]


async def test_a_cursor_from_before_the_feed_positions_still_works(client, context, tenant) -> None:
    bodies = [event_body() for _ in range(3)]
    for body in bodies:
        await _post(client, tenant, body)
    everything = await _page(client, tenant)
    # The seq of the first event, in the old cursor format ("s<seq>"), as clients may hold.
    async with context.db.read() as conn:
        first_seq = await conn.scalar(
            select(event_table.c.seq).where(
                event_table.c.tenant == tenant.name, event_table.c.id == bodies[0]["id"]
            )
        )
    legacy = base64.urlsafe_b64encode(f"s{first_seq}".encode()).decode().rstrip("=")
    rest = await _page(client, tenant, cursor=legacy)
    assert [item["id"] for item in rest["items"]] == [b["id"] for b in bodies[1:]]
    assert len(everything["items"]) == 3


def _asyncpg_url(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def test_an_event_committing_behind_the_cursor_is_not_skipped(
    backend, database_url, client, tenant
) -> None:
    """A transaction that took its seq first but commits last: the feed holds back the later
    events until it commits, then shows it first (on SQLite writes are serial: nothing to hold)."""
    if backend != "postgres":
        pytest.skip("SQLite writes one transaction at a time: commit order is arrival order")
    start = (await _page(client, tenant))["next_cursor"]
    slow = await asyncpg.connect(_asyncpg_url(database_url))
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute(
            "INSERT INTO event (tenant, id, event_type, operation, content_hash, received_at) "
            "VALUES ($1, 'slow-1', 'CUSTOMER', 'CREATE', 'x', now())",
            tenant.name,
        )
        fast = event_body()
        await _post(client, tenant, fast)  # a later seq, committed first
        held = await _page(client, tenant, cursor=start)
        assert held["items"] == []  # not shown while an older transaction may still add events
        assert held["next_cursor"] == start
        await transaction.commit()
    finally:
        await slow.close()
    page = await _page(client, tenant, cursor=start)
    assert [item["id"] for item in page["items"]] == ["slow-1", fast["id"]]


def _start_api(port: int, database_url: str, key_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env.update(
        EC_DATABASE_URL=database_url,
        EC_KEY_DIR=str(key_dir),
        EC_PORT=str(port),
        EC_DISPATCHER_ENABLED="false",
        EC_BOOTSTRAP_DEMO="false",
        EC_TOKEN_CACHE_SECONDS="5",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "event_collector", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def _wait_ready(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert server.poll() is None, f"the API process on {base} exited"
            try:
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} did not become ready")


async def test_tailing_two_api_processes_under_concurrent_load_sees_every_event_once(
    backend, database_url, key_dir, tenant
) -> None:
    if backend != "postgres":
        pytest.skip("several API processes share one database on PostgreSQL")
    ports = [_free_port(), _free_port()]
    servers = [_start_api(port, database_url, key_dir) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    acknowledged: list[str] = []
    seen: list[str] = []
    try:
        for base, server in zip(bases, servers, strict=True):
            await _wait_ready(base, server)
        senders_done = asyncio.Event()

        async def send(worker: int) -> None:
            async with httpx.AsyncClient(base_url=bases[worker % 2], timeout=30) as http:
                for _ in range(120):
                    body = event_body()
                    response = await http.post(FEED, json=body, headers=tenant.headers)
                    if response.status_code == 201:
                        acknowledged.append(body["id"])

        async def tail() -> None:
            cursor = None
            async with httpx.AsyncClient(timeout=30) as http:
                polls = 0
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
                    response = await http.get(
                        f"{bases[polls % 2]}{FEED}", params=params, headers=tenant.headers
                    )
                    polls += 1
                    assert response.status_code == 200, response.text
                    page = response.json()
                    seen.extend(item["id"] for item in page["items"])
                    cursor = page["next_cursor"]
                    if senders_done.is_set() and set(acknowledged) <= set(seen):
                        return
                    if not page["has_more"]:
                        await asyncio.sleep(0.005)

        tailer = asyncio.create_task(tail())
        await asyncio.gather(*(send(worker) for worker in range(8)))
        senders_done.set()
        await asyncio.wait_for(tailer, timeout=120)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)

    assert len(acknowledged) == 8 * 120
    duplicates = [event_id for event_id, count in Counter(seen).items() if count > 1]
    assert duplicates == []
    assert set(acknowledged) - set(seen) == set()
    assert set(seen) == set(acknowledged)

"""A worker process killed (SIGKILL) in the middle of sending loses nothing: its leases expire
and another worker sends what it had claimed (at least once). Real processes, real database,
real HTTP; a fresh database so no other dispatcher of the test session takes part."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from event_collector.app import create_app
from event_collector.models import delivery_table
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, make_settings, make_tenant, wait_until
from tests.factories import event_body


class HoldingReceiver:
    """Records every webhook on arrival (its ``webhook-id`` and body), then holds the response
    until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrivals: list[str] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.arrivals.append(self.headers.get("webhook-id", ""))
                    receiver.bodies.append(body)
                receiver.release.wait(60)
                try:
                    self.send_response(204)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender died while we held its request

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


@pytest.fixture
def receiver() -> Iterator[HoldingReceiver]:
    holding = HoldingReceiver()
    yield holding
    holding.release.set()
    holding.server.shutdown()
    holding.server.server_close()


@pytest_asyncio.fixture
async def fresh_app(
    empty_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    settings = make_settings(
        empty_database_url, tmp_path / "keys", webhook_allowed_hosts=["127.0.0.1"]
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield app.state.runtime, client


def _start_worker(context: Runtime) -> subprocess.Popen[bytes]:
    settings = context.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    env.update(
        EC_DATABASE_URL=settings.database_url,
        EC_KEY_DIR=str(settings.key_dir),
        EC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        EC_DELIVERY_LEASE_SECONDS="2",
        EC_DELIVERY_CONCURRENCY_PER_DESTINATION="8",
        EC_DELIVERY_IDLE_POLL_SECONDS="0.5",
        EC_AUTO_MIGRATE="false",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "event_collector", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _statuses(context: Runtime) -> Counter[str]:
    async with context.db.read() as conn:
        rows = await conn.execute(select(delivery_table.c.status))
        return Counter(rows.scalars())


async def test_killed_worker_loses_nothing(
    fresh_app: tuple[Runtime, httpx.AsyncClient], receiver: HoldingReceiver
) -> None:
    context, client = fresh_app
    tenant: TenantFixture = await make_tenant(context, client)
    created = await client.post(
        "/api/v1/event-subscription",
        json={
            "entityType": "ORDER",
            "destination": {"type": "WEBHOOK", "webhook": {"url": receiver.url}},
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    for _ in range(6):
        posted = await client.post(
            "/api/v1/events", json=event_body(event_type="ORDER"), headers=tenant.headers
        )
        assert posted.status_code == 201
    assert await _statuses(context) == {"pending": 6}

    doomed = _start_worker(context)
    try:
        await wait_until(lambda: receiver.count() == 6, "the first worker to send six", within=30)
        doomed.send_signal(signal.SIGKILL)  # mid-send: nothing recorded, leases held
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert await _statuses(context) == {"pending": 6}

    receiver.release.set()
    survivor = _start_worker(context)
    try:

        async def all_delivered() -> bool:
            return await _statuses(context) == {"delivered": 6}

        await wait_until(all_delivered, "every delivery to be delivered", within=30)
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(15)
    arrivals = Counter(receiver.arrivals)
    assert len(arrivals) == 6
    assert set(arrivals.values()) == {2}  # sent by the killed worker, then again after its lease

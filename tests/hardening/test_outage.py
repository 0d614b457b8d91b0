"""PostgreSQL stopped, crashed or frozen under concurrent ingest, against a real `serve`
process: clients see only 201/200/503 (503 with ``Retry-After`` and no internals), every answer
comes within the database timeouts, the service recovers by itself when the database returns,
the dispatcher delivers again, and every acknowledged event is stored (issue 12, item 2)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from event_collector.app import create_app
from event_collector.kit.db import Database
from event_collector.kit.errors import DatabaseUnavailable
from event_collector.models import event_table
from event_collector.runtime import Runtime
from tests.conftest import make_settings, make_tenant, wait_until
from tests.delivery.test_crash import HoldingReceiver, receiver
from tests.factories import event_body
from tests.hardening.processes import (
    Load,
    PostgresCluster,
    Service,
    bearer_headers,
    cluster,
    provision,
)

__all__ = ["cluster", "receiver"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0
POOL_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 2.0
# The longest a request may wait: a pooled connection, a ping of an idle one and a new one (each
# bounded by the connect timeout), a statement (the client-side bound is one second after the
# server's), and two seconds of slack for a loaded machine.
BOUND_SECONDS = POOL_TIMEOUT + 2 * CONNECT_TIMEOUT + STATEMENT_TIMEOUT + 1.0 + 2.0
READY_BOUND_SECONDS = 2.0
FIXED_DETAIL = DatabaseUnavailable().detail


def _event_ids(receiver: HoldingReceiver) -> set[str]:
    with receiver.lock:
        return {json.loads(body)["id"] for body in receiver.bodies}


@dataclass
class Setup:
    cluster: PostgresCluster
    service: Service
    load: Load
    db: Database
    tenant: str


@pytest_asyncio.fixture
async def setup(
    cluster: PostgresCluster, tmp_path: Path, receiver: HoldingReceiver
) -> AsyncIterator[Setup]:
    receiver.release.set()  # answer every webhook at once
    key_dir = tmp_path / "keys"
    settings = make_settings(cluster.url, key_dir)
    db = Database.from_settings(settings)
    form = await provision(db, "outage")
    service = Service(
        cluster.url,
        key_dir,
        tmp_path / "serve.log",
        EC_DATABASE_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        EC_DATABASE_POOL_TIMEOUT=str(POOL_TIMEOUT),
        EC_DATABASE_STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT),
        EC_TOKEN_CACHE_SECONDS="0",  # every request checks its token in the database
        EC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        EC_DELIVERY_IDLE_POLL_SECONDS="1",
        # A claim whose COMMIT was sent just before the freeze commits when the server thaws,
        # though the dispatcher saw it fail: those deliveries wait for their lease to expire.
        EC_DELIVERY_LEASE_SECONDS="5",
    )
    service.start()
    try:
        headers = await bearer_headers(service.base, form, "outage")
        async with httpx.AsyncClient(base_url=service.base, headers=headers) as http:
            created = await http.post(
                "/api/v1/event-subscription",
                json={
                    "entityType": "ORDER",
                    "destination": {"type": "WEBHOOK", "webhook": {"url": receiver.url}},
                },
            )
            assert created.status_code == 201, created.text
        yield Setup(cluster, service, Load(service.base, headers, form), db, "outage")
    finally:
        service.stop()
        await db.dispose()


async def _outage(
    setup: Setup,
    receiver: HoldingReceiver,
    fault: Callable[[], Any],
    recover: Callable[[Any], None],
    *,
    fault_seconds: float = 4.0,
) -> None:
    load = setup.load
    running = asyncio.create_task(load.run())
    await wait_until(lambda: load.statuses()[201] >= 20, "ingest is flowing", within=20)

    before = len(load.answers)
    handle = await asyncio.to_thread(fault)
    faulted_at = time.monotonic()
    await wait_until(
        lambda: any(a.status == 503 for a in load.since(before)), "a 503 during the fault", 15
    )
    await asyncio.sleep(max(0.0, fault_seconds - (time.monotonic() - faulted_at)))
    during = len(load.answers)
    await asyncio.to_thread(recover, handle)
    recovered_at = time.monotonic()
    await wait_until(
        lambda: sum(a.status == 201 for a in load.since(during)) >= 20,
        "ingest succeeds again without restarting the service",
        within=30,
    )
    recovery_seconds = time.monotonic() - recovered_at
    load.stopping = True
    await running

    assert setup.service.process is not None
    assert setup.service.process.poll() is None, "the service kept running"
    answers = load.answers
    statuses = load.statuses()
    unexpected = [a for a in answers if a.status not in (200, 201, 503)]
    assert not unexpected, (statuses, unexpected[:3], setup.service.log.read_text()[-3000:])
    unavailable = [a for a in answers if a.status == 503]
    assert unavailable, "the fault was never seen"
    for answer in unavailable:
        assert int(answer.retry_after or 0) > 0, answer
        if answer.what == "readyz":
            assert answer.body["status"] == "unavailable", answer
        else:
            assert answer.body == {"error": "DatabaseUnavailable", "detail": FIXED_DETAIL}, answer
    slowest = max(answers, key=lambda a: a.seconds)
    assert slowest.seconds <= BOUND_SECONDS, slowest
    readiness = [a for a in answers if a.what == "readyz" and a.status == 503]
    assert all(a.seconds <= READY_BOUND_SECONDS for a in readiness), readiness
    logger.warning(
        f"{statuses} ; max latency {slowest.seconds:.2f} s ({slowest.what}); "
        f"max readyz 503 latency {max((a.seconds for a in readiness), default=0):.2f} s; "
        f"recovered {recovery_seconds:.2f} s after the database returned; "
        f"{len(load.acknowledged)} events acknowledged"
    )

    async with setup.db.read() as conn:
        stored = set(
            (
                await conn.execute(
                    select(event_table.c.id).where(event_table.c.tenant == setup.tenant)
                )
            ).scalars()
        )
    assert load.acknowledged <= stored, f"lost: {len(load.acknowledged - stored)}"
    # The dispatcher came back too: every acknowledged event reaches the webhook.
    await wait_until(
        lambda: load.acknowledged <= _event_ids(receiver),
        "every acknowledged event is delivered after the outage",
        within=30,
        interval=0.2,
    )


async def test_a_stopped_database(setup: Setup, receiver: HoldingReceiver) -> None:
    cluster = setup.cluster
    await _outage(setup, receiver, lambda: cluster.stop("fast"), lambda _: cluster.start())


async def test_a_crashed_database(setup: Setup, receiver: HoldingReceiver) -> None:
    cluster = setup.cluster
    await _outage(setup, receiver, lambda: cluster.stop("immediate"), lambda _: cluster.start())


async def test_a_frozen_database(setup: Setup, receiver: HoldingReceiver) -> None:
    cluster = setup.cluster
    await _outage(setup, receiver, cluster.freeze, cluster.thaw, fault_seconds=6.0)


_NO_DATABASE = {"/healthz", "/metrics", "/.well-known/jwks.json"}
_VALID_BODIES: dict[tuple[str, str], Any] = {
    ("post", "/api/v1/events"): None,  # filled per call: a fresh event
    ("post", "/api/v1/events/batch"): None,
    ("post", "/api/v1/event-subscription"): {
        "entityType": "ORDER",
        "destination": {"type": "WEBHOOK", "webhook": {"url": "http://127.0.0.1:9/hook"}},
    },
}


@pytest.mark.parametrize("token_cache_seconds", [0, 600], ids=["token-checked", "token-cached"])
async def test_every_endpoint_answers_503_while_the_database_is_down(
    cluster: PostgresCluster, tmp_path: Path, token_cache_seconds: int
) -> None:
    """Every operation of the OpenAPI document, in process: with the token checked in the
    database, each fails there; with the token cached, each reaches its own queries. Either
    way: 503 with Retry-After and the fixed body (a body the route refuses before reaching the
    database may answer 400), never a 500; and the same app answers again once it is back."""
    settings = make_settings(
        cluster.url,
        tmp_path / "keys",
        token_cache_seconds=token_cache_seconds,
        database_connect_timeout=CONNECT_TIMEOUT,
        database_pool_timeout=POOL_TIMEOUT,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            context: Runtime = app.state.runtime
            tenant = await make_tenant(context, client)
            form = {
                "grant_type": "client_credentials",
                "client_id": tenant.client_id,
                "client_secret": tenant.client_secret,
            }
            assert (await client.get("/api/v1/events", headers=tenant.headers)).status_code == 200
            await asyncio.to_thread(cluster.stop, "fast")

            answers: list[tuple[str, str, int]] = []
            for path, operations in app.openapi()["paths"].items():
                if path in _NO_DATABASE:
                    continue
                url = re.sub(r"\{[^}]+\}", "x-1", path)
                for method in operations:
                    kwargs: dict[str, Any] = {"headers": tenant.headers}
                    if "token" in path:
                        kwargs = {"data": form}
                    elif method in ("post", "put"):
                        body = _VALID_BODIES.get((method, path), {})
                        if path == "/api/v1/events":
                            body = event_body()
                        elif path == "/api/v1/events/batch":
                            body = [event_body(), event_body()]
                        kwargs["json"] = body
                    response = await client.request(method.upper(), url, **kwargs)
                    answers.append((method, path, response.status_code))
                    if response.status_code == 503:
                        assert int(response.headers.get("retry-after", 0)) > 0, (method, path)
                        if path != "/readyz":
                            assert response.json() == {
                                "error": "DatabaseUnavailable",
                                "detail": FIXED_DETAIL,
                            }, (method, path)
                    elif (method, path) in _VALID_BODIES or method in ("get", "delete"):
                        raise AssertionError(f"{method} {path}: {response.status_code}")
                    else:
                        assert response.status_code == 400, (method, path, response.text)

            assert sum(status == 503 for *_, status in answers) >= 25, answers
            await asyncio.to_thread(cluster.start)
            await wait_until_async(
                lambda: client.get("/api/v1/events", headers=tenant.headers),
                "the app answers again once the database is back",
            )


async def wait_until_async(
    request: Callable[[], Awaitable[httpx.Response]], what: str, within: float = 15.0
) -> None:
    deadline = time.monotonic() + within
    while (await request()).status_code != 200:
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)

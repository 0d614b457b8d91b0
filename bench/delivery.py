# ruff: noqa: ASYNC220, ASYNC251
"""Delivery throughput and end-to-end latency to a local webhook sink.

    .venv/bin/python bench/delivery.py [--database-url postgresql+asyncpg://postgres@127.0.0.1/bench]
        [--events 5000] [--subscriptions 2] [--concurrency N] [--rate 500 --duration 10]

Creates the schema (migrations), a tenant, N webhook subscriptions pointing at a sink (uvicorn,
separate process, answers 204 and records, per request, now - the event's ``received_at``).

1. Baseline: bare aiohttp, httpx and our webhook client (delivery/webhook_http.py) POSTs of a
   similar body to the same sink, at the dispatcher's total concurrency (per-destination
   concurrency x subscriptions).
2. Backlog: inserts the events and their delivery rows directly, starts one Dispatcher and
   measures until every delivery is no longer pending. Prints deliveries/second.
3. Steady rate (``--rate`` > 0): ingests events one at a time through the product's EventWriter
   (routing hook, NOTIFY hook, the dispatcher's after-commit wake-up, all in this process and
   event loop, as ``serve`` runs them, minus HTTP parsing) at ``--rate`` events/s for
   ``--duration`` s, and prints the sink's end-to-end latency p50/p99/max (event received_at ->
   sink receive time) and how long the last deliveries took after the last ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

SINK = """
import json, time
from datetime import datetime

latencies = []


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    out = b""
    if path.startswith("/hook/"):
        received_at = json.loads(body)["received_at"]
        sent = datetime.fromisoformat(received_at.replace("Z", "+00:00")).timestamp()
        latencies.append(time.time() - sent)
    elif path == "/stats":
        out = json.dumps({
            "count": len(latencies),
            "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies) if latencies else None,
            "last_at": time.time(),
        }).encode()
    elif path == "/reset":
        latencies.clear()
    status = 200 if out else 204
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": out})
"""

BODY = (
    b'{"id":"ev-0","entity_id":"c-0","entity_name":null,"event_type":"CUSTOMER",'
    b'"event_source":null,"event_payload":{"base64_encoded_payload_json":'
    b'"eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSJ9","base64_encoded_fault_json":null,'
    b'"entity_id":"c-0","key_attributes":null,"operation":"CREATE"},"tenant":"bench",'
    b'"entity_type":"CUSTOMER","received_at":"2026-01-01T00:00:00.000000Z",'
    b'"payload":{"id":"c-1","email":"a@example.com"}}'
)


async def bare_clients(url: str, concurrency: int, count: int = 4000) -> dict[str, float]:
    """Requests/s of bare clients posting a delivery-sized body to the sink."""
    import aiohttp
    import httpx

    headers = {"content-type": "application/json", "webhook-id": "x"}

    async def run(send: Any) -> float:
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with semaphore:
                await send()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.perf_counter() - started)

    results: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:

        async def via_aiohttp() -> None:
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()

        results["aiohttp"] = await run(via_aiohttp)
    async with httpx.AsyncClient(
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    ) as client:

        async def via_httpx() -> None:
            await client.post(url, content=BODY, headers=headers)

        results["httpx"] = await run(via_httpx)
    from event_collector.delivery.webhook_http import Target, WebhookClient

    parsed = httpx.URL(url)
    assert parsed.port is not None
    target = Target(
        "http",
        parsed.host,
        parsed.port,
        None,
        b"POST %s HTTP/1.1\r\nhost: %s\r\n" % (parsed.raw_path, parsed.netloc),
    )
    ours = WebhookClient(timeout=15)
    lines = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items())

    async def via_webhook_client() -> None:
        await ours.post(target, lines, BODY)

    results["event_collector webhook client"] = await run(via_webhook_client)
    await ours.close()
    return results


async def sink_stats(port: int, path: str = "/stats") -> dict[str, Any]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}") as response,
    ):
        text = await response.text()
    return json.loads(text) if text else {}


async def steady(
    args: argparse.Namespace,
    settings: Any,
    db: Any,
    secrets: Any,
    tenant: str,
    subs: list[str],
    port: int,
) -> None:
    """Ingest at a steady rate through the EventWriter; report the sink's latencies."""
    from event_collector.delivery.dispatcher import Dispatcher
    from event_collector.delivery.routing import routing_hook
    from event_collector.events.model import NewEvent
    from event_collector.events.schemas import EventIn
    from event_collector.events.writer import EventWriter
    from event_collector.kit.db import utcnow

    writer = EventWriter(db, max_group_events=settings.ingest_group_max_events)
    dispatcher = Dispatcher(settings, db, secrets)
    # As serve wires it: NOTIFY (PostgreSQL) and wake the dispatcher when routing made rows.
    writer.add_hook(routing_hook(dispatcher.wake))
    await dispatcher.start()
    await sink_stats(port, "/reset")
    total_events = int(args.rate * args.duration)
    expected = total_events * len(subs)
    tasks: set[asyncio.Task[Any]] = set()

    async def ingest_one(index: int) -> None:
        event = EventIn.model_validate(
            {
                "id": f"steady-{index}",
                "entity_id": f"c-{index}",
                "event_type": "CUSTOMER",
                "event_payload": {
                    "base64_encoded_payload_json": (
                        "eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSJ9"
                    ),
                    "entity_id": f"c-{index}",
                    "operation": "CREATE",
                },
            }
        )
        await writer.submit([NewEvent.from_input(tenant, event, utcnow())])

    started = time.perf_counter()
    sent = 0
    while sent < total_events:
        due = min(total_events, int((time.perf_counter() - started) * args.rate) + 1)
        while sent < due:
            task = asyncio.create_task(ingest_one(sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.005)
    ingest_elapsed = time.perf_counter() - started
    await writer.drain()
    while tasks:
        await asyncio.gather(*tasks)
    last_ingest = time.time()
    stats: dict[str, Any] = {}
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        stats = await sink_stats(port)
        if stats["count"] >= expected:
            break
        await asyncio.sleep(0.02)
    await dispatcher.stop()
    p50, p99, worst = (stats.get(k) or 0.0 for k in ("p50", "p99", "max"))
    print(
        f"steady: {total_events} events at {total_events / ingest_elapsed:.0f}/s "
        f"(target {args.rate}/s) x {len(subs)} subs: {stats.get('count')}/{expected} received; "
        f"end-to-end latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {worst * 1000:.1f} ms; last delivery {stats['last_at'] - last_ingest:.2f}s "
        f"after the last ingest"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main(args: argparse.Namespace) -> None:
    from sqlalchemy import func, insert, select

    from event_collector.delivery.dispatcher import Dispatcher
    from event_collector.delivery.messages import event_message
    from event_collector.delivery.service import enqueue_messages
    from event_collector.events.repository import EventRepository
    from event_collector.kit import migrate
    from event_collector.kit.crypto import SecretBox
    from event_collector.kit.db import Database, utcnow
    from event_collector.kit.settings import Settings
    from event_collector.models import delivery_table, event_table, subscription_table, tenant_table
    from event_collector.subscriptions.service import secret_associated_data

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    sink_file = workdir / "sink.py"
    sink_file.write_text(SINK)
    port = free_port()
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "sink:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
        ],
        cwd=workdir,
    )
    try:
        settings = Settings(
            database_url=args.database_url,
            key_dir=workdir / "keys",
            webhook_allowed_hosts=["127.0.0.1"],
            **(
                {"delivery_concurrency_per_destination": args.concurrency}
                if args.concurrency
                else {}
            ),
            **({"delivery_batch_size": args.batch} if args.batch else {}),
        )
        args.concurrency = settings.delivery_concurrency_per_destination
        db = Database.from_settings(settings)
        await migrate.upgrade(db)
        secrets = SecretBox.from_key_dir(settings.key_dir)
        tenant = f"bench-{uuid.uuid4().hex[:6]}"
        now = utcnow()
        subs = [f"sub-{i}" for i in range(args.subscriptions)]
        async with db.write() as conn:
            await conn.execute(insert(tenant_table).values(id=tenant, created_at=now))
            for sub in subs:
                await conn.execute(
                    insert(subscription_table).values(
                        tenant=tenant,
                        id=sub,
                        entity_type="CUSTOMER",
                        active=True,
                        subscribe_create=True,
                        subscribe_change=True,
                        subscribe_delete=True,
                        destination_type="WEBHOOK",
                        destination={"url": f"http://127.0.0.1:{port}/hook/{sub}"},
                        secret_sealed=secrets.seal(
                            "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",
                            associated_data=secret_associated_data(tenant, sub),
                        ),
                        created_at=now,
                        updated_at=now,
                    )
                )
            await conn.execute(
                insert(event_table),
                [
                    {
                        "tenant": tenant,
                        "id": f"ev-{i}",
                        "entity_id": f"c-{i}",
                        "event_type": "CUSTOMER",
                        "operation": "CREATE",
                        "entity_type": "CUSTOMER",
                        "payload_entity_id": f"c-{i}",
                        "payload_b64": "eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSJ9",
                        "content_hash": "x",
                        "received_at": now,
                    }
                    for i in range(args.events)
                ],
            )
            # The deliveries carry their events' messages, as routing makes them.
            stored = await EventRepository(conn).iter_all(tenant, after_seq=0, limit=args.events)
            await enqueue_messages(
                conn, tenant, "CUSTOMER", "CREATE", [event_message(event) for event in stored]
            )
        total = len(stored) * len(subs)
        for _ in range(50):  # wait for the sink
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        bare = await bare_clients(f"http://127.0.0.1:{port}/bare", args.concurrency * len(subs))
        print(
            "baseline (bare clients, concurrency "
            f"{args.concurrency * len(subs)}): "
            + ", ".join(f"{name} {rate:.0f} req/s" for name, rate in bare.items())
        )
        dispatcher = Dispatcher(settings, db, secrets)
        started = time.perf_counter()
        cpu_started = time.process_time()
        await dispatcher.start()
        while True:
            async with db.read() as conn:
                done = (
                    await conn.execute(
                        select(func.count())
                        .select_from(delivery_table)
                        .where(
                            delivery_table.c.tenant == tenant, delivery_table.c.status != "pending"
                        )
                    )
                ).scalar_one()
            if done >= total:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        await dispatcher.stop()
        async with db.read() as conn:
            statuses: Any = (
                await conn.execute(
                    select(delivery_table.c.status, func.count())
                    .where(delivery_table.c.tenant == tenant)
                    .group_by(delivery_table.c.status)
                )
            ).all()
        print(
            f"{total} deliveries ({args.events} events x {len(subs)} webhook subscriptions) "
            f"in {elapsed:.2f}s = {total / elapsed:.0f} deliveries/s, "
            f"{cpu / total * 1e6:.0f} CPU µs per delivery (this process); "
            f"statuses {dict(statuses)}; backend {db.engine.dialect.name}; "
            f"concurrency/destination {args.concurrency}"
        )
        if args.rate > 0:
            await steady(args, settings, db, secrets, tenant, subs, port)
        await db.dispose()
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("EC_DATABASE_URL"), required=False)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--subscriptions", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=None, help="default: the setting's")
    parser.add_argument("--batch", type=int, default=None, help="default: the setting's")
    parser.add_argument("--rate", type=float, default=0.0, help="steady events/s (0: skip)")
    parser.add_argument("--duration", type=float, default=10.0)
    arguments = parser.parse_args()
    if not arguments.database_url:
        arguments.database_url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    asyncio.run(main(arguments))

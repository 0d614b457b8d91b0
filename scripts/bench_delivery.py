# ruff: noqa: T201, ASYNC220, ASYNC251
"""Delivery throughput to a local webhook sink.

    python scripts/bench_delivery.py --database-url postgresql+asyncpg://postgres@127.0.0.1/bench \
        --events 5000 --subscriptions 2 [--concurrency 4]

Creates the schema (migrations), a tenant, N webhook subscriptions pointing at a sink (uvicorn,
separate process, answers 204), inserts the events and their delivery rows directly, then starts
one Dispatcher and measures until every delivery is `delivered`. Prints deliveries/second.
"""

from __future__ import annotations

import argparse
import asyncio
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
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main(args: argparse.Namespace) -> None:
    from sqlalchemy import func, insert, select

    from event_collector.delivery.dispatcher import Dispatcher
    from event_collector.kit import migrate
    from event_collector.kit.crypto import SecretBox
    from event_collector.kit.db import Database, utcnow
    from event_collector.kit.settings import Settings
    from event_collector.models import delivery_table, event_table, subscription_table, tenant_table

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
            delivery_concurrency_per_destination=args.concurrency,
            delivery_batch_size=args.batch,
        )
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
                            associated_data=f"{tenant}:{sub}",
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
            seqs = list(
                (
                    await conn.execute(
                        select(event_table.c.seq).where(event_table.c.tenant == tenant)
                    )
                ).scalars()
            )
            await conn.execute(
                insert(delivery_table),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "tenant": tenant,
                        "subscription_id": sub,
                        "event_seq": seq,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for seq in seqs
                    for sub in subs
                ],
            )
        total = len(seqs) * len(subs)
        for _ in range(50):  # wait for the sink
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        dispatcher = Dispatcher(settings, db, secrets)
        started = time.perf_counter()
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
        await dispatcher.stop()
        async with db.read() as conn:
            statuses: Any = (
                await conn.execute(
                    select(delivery_table.c.status, func.count())
                    .where(delivery_table.c.tenant == tenant)
                    .group_by(delivery_table.c.status)
                )
            ).all()
        await db.dispose()
        print(
            f"{total} deliveries ({args.events} events x {len(subs)} webhook subscriptions) "
            f"in {elapsed:.2f}s = {total / elapsed:.0f} deliveries/s; "
            f"statuses {dict(statuses)}; backend {db.engine.dialect.name}; "
            f"concurrency/destination {args.concurrency}"
        )
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("EC_DATABASE_URL"), required=False)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--subscriptions", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    arguments = parser.parse_args()
    if not arguments.database_url:
        arguments.database_url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    asyncio.run(main(arguments))

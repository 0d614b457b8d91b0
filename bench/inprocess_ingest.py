"""CPU per single-event ingest request, with the ASGI app driven in process (no HTTP, no wrk).

The wrk scenarios of ``./scripts/bench`` measure the service as users run it, but on a shared
2-core machine their absolute figures drift. This drives ``create_app()``'s ASGI callable
directly with N concurrent clients that post one new ORDER event each at a time (the body wrk
sends) and reports the process's CPU time per request — user + system, every thread, including
the SQLite commit thread — over several rounds. It is the figure to compare before and after a
change to the ingest path; uvicorn's own cost (~25 µs per request here) is not in it.

    .venv/bin/python bench/inprocess_ingest.py                       # SQLite, 64 clients
    .venv/bin/python bench/inprocess_ingest.py --concurrency 8       # smaller groups
    .venv/bin/python bench/inprocess_ingest.py --immediate-writer    # the request path alone
    .venv/bin/python bench/inprocess_ingest.py \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/ec_bench   # an empty database

``--immediate-writer`` replaces the group writer with one that answers at once (after one pass
through the event loop, as a real submission waits for its group), so the difference between the
two runs is what storing costs per request. Running it with several ``--concurrency`` values
separates the group commit's fixed cost per group from its cost per event.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from event_collector.app import create_app
from event_collector.auth import service as auth_service
from event_collector.events.model import NewEvent, StoredEvent
from event_collector.events.writer import EventWriter, IngestResult, Outcome
from event_collector.kit.settings import Settings

PAYLOAD_B64 = "eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSIsImZpcnN0TmFtZSI6IkFkYSJ9"


class ImmediateWriter(EventWriter):
    """Answers every submission as newly created, storing nothing."""

    async def submit(self, events: Sequence[NewEvent]) -> list[IngestResult]:
        await asyncio.sleep(0)
        return [
            IngestResult(Outcome.CREATED, StoredEvent(seq=1, **event.__dict__)) for event in events
        ]


class Client:
    """One ASGI ``http`` request at a time, like one of wrk's connections."""

    def __init__(self, app: Any, token: str, tenant: str, run: str) -> None:
        self.app = app
        self.headers = [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"x-twc-tenant", tenant.encode()),
        ]
        self.run = run
        self.statuses: dict[int, int] = {}

    async def post(self, number: int) -> None:
        event_id = f"bench-{self.run}-{number}"
        body = (
            f'{{"id":"{event_id}","entity_id":"o-{number}","event_type":"ORDER",'
            f'"event_source":"CONNECTOR","event_payload":{{"operation":"CREATE",'
            f'"key_attributes":{{"correlationId":"{event_id}"}},'
            f'"base64_encoded_payload_json":"{PAYLOAD_B64}"}}}}'
        ).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/events",
            "raw_path": b"/api/v1/events",
            "query_string": b"",
            "root_path": "",
            "headers": [*self.headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:  # a handler waiting for a disconnect: there is none
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                self.statuses[status] = self.statuses.get(status, 0) + 1

        await self.app(scope, receive, send)


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        settings = Settings(
            database_url=database_url,
            key_dir=Path(tmp) / "keys",
            auto_migrate=True,
            bootstrap_demo=False,
            dispatcher_enabled=True,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            runtime = app.state.runtime
            tenant = f"bench-{uuid.uuid4().hex[:8]}"
            async with runtime.db.write() as conn:
                await auth_service.create_tenant(conn, tenant)
                issued = await auth_service.create_client(conn, tenant)
            issued_token = await runtime.tokens.issue(issued.client_id, issued.client_secret, None)
            token = issued_token["access_token"]
            if args.immediate_writer:
                runtime._writer = ImmediateWriter(runtime.db)  # replaces the runtime's writer
            client = Client(app, token, tenant, uuid.uuid4().hex[:6])
            numbers = iter(range(1, sys.maxsize))

            async def one_client(requests: int) -> None:
                for _ in range(requests):
                    await client.post(next(numbers))

            async def round_() -> float:
                started = time.process_time()
                await asyncio.gather(*(one_client(args.requests) for _ in range(args.concurrency)))
                return (time.process_time() - started) / (args.requests * args.concurrency)

            await round_()  # warm-up: caches, compiled statements, the first groups
            costs = sorted([await round_() for _ in range(args.rounds)])
        print(
            f"{'request path only' if args.immediate_writer else 'ingest'}, "
            f"{args.concurrency} clients, {args.rounds} rounds of "
            f"{args.requests * args.concurrency} requests: CPU per request "
            f"min {costs[0] * 1e6:.1f} µs, median {statistics.median(costs) * 1e6:.1f} µs "
            f"(all: {', '.join(f'{cost * 1e6:.1f}' for cost in costs)}); "
            f"answers {dict(sorted(client.statuses.items()))}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64, help="clients (64)")
    parser.add_argument("--requests", type=int, default=200, help="per client per round (200)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--database-url", help="an empty database to use (default: a fresh SQLite file)"
    )
    parser.add_argument(
        "--immediate-writer",
        action="store_true",
        help="answer submissions at once, storing nothing: the request path's cost alone",
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()

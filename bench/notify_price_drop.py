"""PRICE_DROP over a large read model: wall time and peak RSS of one run, ingest latency
meanwhile, and the same run against a SendGrid sink.

    python bench/notify_price_drop.py --database-url sqlite+aiosqlite:///./bench-notify.db
    python bench/notify_price_drop.py --database-url postgresql+asyncpg://postgres@127.0.0.1/ec_bench_notify
    python bench/notify_price_drop.py --database-url ... --scale 0.1     # 10k / 50k, to iterate

The read model (customers, wishlists, items, variants, prices) is written straight into the
``rm_*`` tables (ingesting it through the API would measure ingest, not the run): ``--customers``
customers (default 100k), each with one wishlist of ``--items-per-customer`` items (default 5, so
500k items) over ``--variants`` variants (default 50k), every item's baseline 100.00, and
``--dropped`` of the variants (default 10 %) now at 80.00; ``--scale`` multiplies customers and
variants. Each run happens in a child process, so its peak RSS is the run's alone:

* outbox: the run's wall time and peak RSS, while an ``event-collector serve`` process on the
  same database takes single ORDER posts from one client (``--probe-interval`` apart); their p99
  latency during the run is printed next to the same figure measured just before it (the
  baseline of this invocation: the machine is shared, absolute figures drift);
* sendgrid: the same run with the job's ``template_id`` against a loopback sink answering 202,
  which counts the requests (expected: ceil(recipients / 1000)) and personalizations.

Not a test: it prints figures (and the load average, since the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from harness import Database as BenchDatabase
from harness import Service, Tenant, provision
from scenarios.load import order_event
from sqlalchemy import delete, func, insert, select

from event_collector.kit import migrate
from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database
from event_collector.kit.settings import Settings
from event_collector.models import (
    customer_table,
    notification_ledger_table,
    notification_table,
    price_table,
    variant_table,
    wishlist_item_table,
    wishlist_table,
)
from event_collector.notifications.content import Renderer
from event_collector.notifications.service import NotifyDeps, RunRequest, execute_run

TENANT = "bench-notify"
CHUNK = 5000


def _book(seq: int, at: datetime) -> dict[str, object]:
    return {
        "deleted": False,
        "modified_at": None,
        "last_operation": "CREATE",
        "first_seq": seq,
        "last_seq": seq,
        "updated_at": at,
    }


async def _insert(conn, table, rows: list[dict]) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, len(rows), CHUNK):
        await conn.execute(insert(table), rows[start : start + CHUNK])


async def prepare(db: Database, args: argparse.Namespace) -> None:
    async with db.read() as conn:
        existing = await conn.scalar(
            select(func.count())
            .select_from(wishlist_item_table)
            .where(wishlist_item_table.c.tenant == TENANT)
        )
    expected = args.customers * args.items_per_customer
    if existing == expected:
        print(f"read model present ({existing} items)", flush=True)
        return
    started = time.perf_counter()
    at = datetime.now(UTC) - timedelta(days=1)
    rng = random.Random(7)
    dropped = set(rng.sample(range(args.variants), int(args.variants * args.dropped)))
    async with db.write() as conn:
        for table in (
            customer_table,
            wishlist_table,
            wishlist_item_table,
            variant_table,
            price_table,
        ):
            await conn.execute(delete(table).where(table.c.tenant == TENANT))
        variants = [
            {"tenant": TENANT, "id": f"v{n}", "title": f"Variant {n}", **_book(1, at)}
            for n in range(args.variants)
        ]
        await _insert(conn, variant_table, variants)
        prices = [
            {
                "tenant": TENANT,
                "variant_id": f"v{n}",
                "currency": "AUD",
                "price": Decimal(100),
                "sale_price": Decimal(80) if n in dropped else None,
                "active": True,
                "effective_price": Decimal(80) if n in dropped else Decimal(100),
                **_book(2, at),
            }
            for n in range(args.variants)
        ]
        await _insert(conn, price_table, prices)
        for start in range(0, args.customers, CHUNK):
            ids = range(start, min(start + CHUNK, args.customers))
            await conn.execute(
                insert(customer_table),
                [
                    {
                        "tenant": TENANT,
                        "id": f"c{n}",
                        "email": f"c{n}@example.com",
                        "first_name": f"C{n}",
                        "accepts_marketing": True,
                        **_book(3, at),
                    }
                    for n in ids
                ],
            )
            await conn.execute(
                insert(wishlist_table),
                [
                    {"tenant": TENANT, "id": f"w{n}", "customer_id": f"c{n}", **_book(4, at)}
                    for n in ids
                ],
            )
            await conn.execute(
                insert(wishlist_item_table),
                [
                    {
                        "tenant": TENANT,
                        "id": f"i{n}-{k}",
                        "wishlist_id": f"w{n}",
                        "variant_id": f"v{rng.randrange(args.variants)}",
                        "added_at": at,
                        "baseline_price": Decimal(100),
                        "baseline_currency": "AUD",
                        **_book(5, at),
                    }
                    for n in ids
                    for k in range(args.items_per_customer)
                ],
            )
    if not db.is_sqlite:
        # Planner statistics for the freshly written tables (autovacuum would, later).
        async with db.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql(
                "ANALYZE"
            )
    print(f"read model written in {time.perf_counter() - started:.1f} s", flush=True)


SINK_KEY = "bench-sendgrid-key"


async def run_once(settings: Settings, channel: str) -> dict[str, object]:
    db = Database.from_settings(settings)
    try:
        async with db.write() as conn:
            for table in (notification_table, notification_ledger_table):
                await conn.execute(delete(table).where(table.c.tenant == TENANT))
        deps = NotifyDeps(
            db=db,
            settings=settings,
            secrets=SecretBox.from_key_dir(settings.key_dir),
            renderer=Renderer(),
        )
        job = {
            "id": "bench-job",
            "notification": "PRICE_DROP",
            "number_of_items_in_email": -1,
            # SendGrid batches 1000 personalizations per request only with a dynamic template.
            "template_id": "d-bench" if channel == "sendgrid" else None,
            "job_parameters": {"campaign_id": "bench", "utm_medium": "email"},
        }
        started = time.perf_counter()
        outcome = await execute_run(
            deps, RunRequest(TENANT, job, "bench-run", False, datetime.now(UTC))
        )
        wall = time.perf_counter() - started
    finally:
        await db.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_seconds": round(wall, 2), "peak_rss_mb": round(peak_mb, 1), **outcome.counts}


class SendGridSink(BaseHTTPRequestHandler):
    """``POST /v3/mail/send``: checks the request's shape, counts it, answers 202."""

    requests = 0
    personalizations = 0
    largest = 0
    rejected = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        people = body.get("personalizations", [])
        ok = (
            self.path == "/v3/mail/send"
            and self.headers.get("authorization") == f"Bearer {SINK_KEY}"
            and body.get("template_id") == "d-bench"
            and 1 <= len(people) <= 1000
            and all(len(p["to"]) == 1 and "dynamic_template_data" in p for p in people)
        )
        cls = type(self)
        cls.requests += 1
        cls.personalizations += len(people)
        cls.largest = max(cls.largest, len(people))
        cls.rejected += 0 if ok else 1
        self.send_response(202 if ok else 400)
        self.send_header("x-message-id", f"sink-{cls.requests}")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: 41 requests per run
        return


class IngestProbe:
    """One client posting single ORDER events to the API, one at a time, ``interval`` apart."""

    def __init__(self, base_url: str, tenant: Tenant, interval: float) -> None:
        self.base_url = base_url
        self.tenant = tenant
        self.interval = interval
        self.failures = 0
        self._run = uuid.uuid4().hex[:8]
        self._number = 0

    async def measure(self, until: asyncio.Event | float) -> list[float]:
        """Latencies (ms) of posts until the event is set or for that many seconds."""
        latencies: list[float] = []
        deadline = time.monotonic() + until if isinstance(until, float) else None
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60) as client:
            while True:
                if isinstance(until, asyncio.Event) and until.is_set():
                    return latencies
                if deadline is not None and time.monotonic() >= deadline:
                    return latencies
                self._number += 1
                event_id = f"probe-{self._run}-{self._number}"
                started = time.perf_counter()
                response = await client.post(
                    "/api/v1/events", json=order_event(event_id), headers=self.tenant.headers
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code >= 300:
                    self.failures += 1
                await asyncio.sleep(self.interval)


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)

    def at(p: float) -> float | None:
        if not ordered:
            return None
        return round(
            ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))], 1
        )

    return {"count": len(ordered), "p50": at(50), "p99": at(99), "max": at(100)}


async def child_run(
    args: argparse.Namespace, channel: str, env: dict[str, str]
) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--database-url",
        args.database_url,
        "--run-only",
        channel,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the {channel} run failed:\n{err.decode()}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def measure(args: argparse.Namespace, probe: IngestProbe | None) -> dict[str, object]:
    report: dict[str, object] = {"load_average_at_start": os.getloadavg()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    if probe is not None:
        baseline = await probe.measure(args.probe_seconds)
    stop = asyncio.Event()
    during_task = asyncio.create_task(probe.measure(stop)) if probe is not None else None
    try:
        outbox = await child_run(args, "outbox", env)
    finally:
        stop.set()
    report["outbox"] = outbox
    if during_task is not None and probe is not None:
        during = await during_task
        before, meanwhile = percentiles(baseline), percentiles(during)
        report["ingest_latency_ms"] = {
            "without_run": before,
            "during_run": meanwhile,
            "p99_ratio_during_vs_without": (
                round(meanwhile["p99"] / before["p99"], 2)  # type: ignore[operator]
                if before["p99"] and meanwhile["p99"]
                else None
            ),
            "failed_posts": probe.failures,
        }
    if args.sendgrid:
        server = ThreadingHTTPServer(("127.0.0.1", 0), SendGridSink)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            sink_env = {
                **env,
                "EC_EMAIL_PROVIDER": "sendgrid",
                "EC_SENDGRID_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
                "EC_SENDGRID_API_KEY": SINK_KEY,
            }
            sendgrid = await child_run(args, "sendgrid", sink_env)
        finally:
            server.shutdown()
            server.server_close()
        recipients = int(sendgrid.get("sent", 0)) + int(sendgrid.get("errors", 0))
        report["sendgrid"] = {
            "wall_seconds": sendgrid["wall_seconds"],
            "peak_rss_mb": sendgrid["peak_rss_mb"],
            "recipients": recipients,
            "requests": SendGridSink.requests,
            "expected_requests": math.ceil(recipients / 1000),
            "personalizations": SendGridSink.personalizations,
            "largest_request": SendGridSink.largest,
            "rejected_requests": SendGridSink.rejected,
            "sent": sendgrid.get("sent"),
            "errors": sendgrid.get("errors"),
        }
    report["load_average_at_end"] = os.getloadavg()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--items-per-customer", type=int, default=5)
    parser.add_argument("--variants", type=int, default=50_000)
    parser.add_argument("--dropped", type=float, default=0.10)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies customers, variants")
    parser.add_argument("--probe-seconds", type=float, default=10.0, help="ingest baseline")
    parser.add_argument("--probe-interval", type=float, default=0.02, help="between posts (s)")
    parser.add_argument("--no-ingest", action="store_true", help="skip the ingest latency probe")
    parser.add_argument("--no-sendgrid", dest="sendgrid", action="store_false")
    parser.add_argument("--run-only", choices=("outbox", "sendgrid"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.customers = round(args.customers * args.scale)
    args.variants = max(1, round(args.variants * args.scale))
    key_dir = Path(tempfile.gettempdir()) / "ec-bench-notify-keys"
    if args.run_only:
        # The child: server defaults for the channel come from the EC_* variables the parent set.
        settings = Settings(database_url=args.database_url, key_dir=key_dir, bootstrap_demo=False)
        print(json.dumps(asyncio.run(run_once(settings, args.run_only))))
        return
    settings = Settings(database_url=args.database_url, key_dir=key_dir, bootstrap_demo=False)

    async def setup() -> None:
        db = Database.from_settings(settings)
        try:
            await migrate.upgrade(db)
            await prepare(db, args)
        finally:
            await db.dispose()

    asyncio.run(setup())
    service: Service | None = None
    probe: IngestProbe | None = None
    workdir = Path(tempfile.mkdtemp(prefix="ec-bench-notify-"))
    try:
        if not args.no_ingest:
            kind = "sqlite" if args.database_url.startswith("sqlite") else "postgres"
            service = Service(BenchDatabase(kind, args.database_url), workdir)
            service.start_api()
            tenant = provision(service.env, service.base_url, f"probe-{uuid.uuid4().hex[:8]}")
            probe = IngestProbe(service.base_url, tenant, args.probe_interval)
        report = asyncio.run(measure(args, probe))
    finally:
        if service is not None:
            service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"customers": args.customers, "variants": args.variants, **report}, indent=2))


if __name__ == "__main__":
    main()

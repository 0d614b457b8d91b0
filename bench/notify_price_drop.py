"""PRICE_DROP over a large read model, outbox channel: wall time and peak RSS of one run.

    python bench/notify_price_drop.py --database-url sqlite+aiosqlite:///./bench-notify.db
    python bench/notify_price_drop.py --database-url postgresql+asyncpg://postgres@127.0.0.1/ec_bench_notify

The read model (customers, wishlists, items, variants, prices) is written straight into the
``rm_*`` tables (ingesting it through the API would measure ingest, not the run): ``--customers``
customers (default 100k), each with one wishlist of ``--items-per-customer`` items (default 5, so
500k items) over ``--variants`` variants (default 50k), every item's baseline 100.00, and
``--dropped`` of the variants (default 10 %) now at 80.00. The run itself happens in a child
process, so its peak RSS is the run's alone. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

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


async def run_once(settings: Settings) -> dict[str, object]:
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
            "template_id": None,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--items-per-customer", type=int, default=5)
    parser.add_argument("--variants", type=int, default=50_000)
    parser.add_argument("--dropped", type=float, default=0.10)
    parser.add_argument("--run-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    key_dir = Path(tempfile.gettempdir()) / "ec-bench-notify-keys"
    settings = Settings(database_url=args.database_url, key_dir=key_dir, bootstrap_demo=False)
    if args.run_only:
        print(json.dumps(asyncio.run(run_once(settings))))
        return

    async def setup() -> None:
        db = Database.from_settings(settings)
        try:
            await migrate.upgrade(db)
            await prepare(db, args)
        finally:
            await db.dispose()

    asyncio.run(setup())
    child = subprocess.run(
        [sys.executable, __file__, "--database-url", args.database_url, "--run-only"],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Insert cost of random (UUIDv4) versus time-ordered (UUIDv7) event ids on SQLite.

Two SQLite databases, identical but for the ids their events get, are filled with ``--prefill``
events, then written in alternating rounds of ``--events`` events through the real
``EventWriter`` (``--group`` events per transaction: 1 is a single-event POST with no
concurrency, larger groups are what the group commit makes of concurrent requests or a batch).
Reported per kind: events per second over all rounds (and the median round), the WAL pages
(frames) a transaction writes, the database and WAL size at the end; then the ratios, measured
in the same run (no absolute threshold: the shared machine's figures drift, the ratios much
less).

    .venv/bin/python bench/event_ids.py                 # 20k stored first, 1 per transaction
    .venv/bin/python bench/event_ids.py --group 100 --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from event_collector.app import create_app
from event_collector.auth import service as auth_service
from event_collector.events.model import NewEvent
from event_collector.events.schemas import EventIn
from event_collector.kit.db import utcnow
from event_collector.kit.ids import uuid7
from event_collector.kit.settings import Settings

PAYLOAD_B64 = "eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSIsImZpcnN0TmFtZSI6IkFkYSJ9"
KINDS: dict[str, Callable[[], uuid.UUID]] = {"uuid4": uuid.uuid4, "uuid7": uuid7}


def events(tenant: str, make_id: Callable[[], uuid.UUID], count: int) -> list[NewEvent]:
    now = utcnow()
    made = []
    for number in range(count):
        event = EventIn.model_validate(
            {
                "id": str(make_id()),
                "entity_id": f"o-{number}",
                "event_type": "ORDER",
                "event_source": "CONNECTOR",
                "event_payload": {
                    "operation": "CREATE",
                    "key_attributes": {"correlationId": f"c-{number}"},
                    "base64_encoded_payload_json": PAYLOAD_B64,
                },
            }
        )
        made.append(NewEvent.from_input(tenant, event, now))
    return made


async def write(runtime: Any, batch: list[NewEvent], group: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(batch), group):
        await runtime.writer.submit(batch[start : start + group])
    return time.perf_counter() - started


async def wal_frames_per_commit(runtime: Any, path: Path, make_id: Any, group: int) -> float:
    """WAL frames (pages) written per transaction of ``group`` new events.

    The WAL is emptied first (a TRUNCATE checkpoint from a side connection); every commit then
    appends its frames (a 24-byte header and a page each) until the writer's automatic
    checkpoint at 1,000 frames, so transactions are written while it holds under 600.
    """
    side = sqlite3.connect(path)
    try:
        page_size = side.execute("PRAGMA page_size").fetchone()[0]
        side.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        side.close()
    wal = Path(f"{path}-wal")
    commits = frames = 0
    while frames < 600 and commits < 200:
        await runtime.writer.submit(events("bench", make_id, group))
        commits += 1
        frames = max(0, wal.stat().st_size - 32) // (24 + page_size)  # noqa: ASYNC240
    return frames / commits


def sizes(path: Path) -> tuple[float, float]:
    wal = Path(f"{path}-wal")
    return path.stat().st_size / 2**20, (wal.stat().st_size if wal.exists() else 0) / 2**20


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            runtimes: dict[str, Any] = {}
            paths: dict[str, Path] = {}
            for kind in KINDS:
                paths[kind] = Path(tmp) / f"{kind}.db"
                settings = Settings(
                    database_url=f"sqlite+aiosqlite:///{paths[kind]}",
                    key_dir=Path(tmp) / f"keys-{kind}",
                    auto_migrate=True,
                    bootstrap_demo=False,
                    dispatcher_enabled=False,
                    scheduler_enabled=False,
                )
                app = create_app(settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
                runtime = app.state.runtime
                async with runtime.db.write() as conn:
                    await auth_service.create_tenant(conn, "bench")
                runtimes[kind] = runtime
                prefill = events("bench", KINDS[kind], args.prefill)
                await write(runtime, prefill, 500)
            print(
                f"{args.prefill} events already stored per database; rounds of {args.events} "
                f"events, {args.group} per transaction"
            )
            seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for round_number in range(args.rounds):
                # Alternate which kind goes first, so that drift favours neither.
                order = list(KINDS) if round_number % 2 == 0 else list(reversed(KINDS))
                for kind in order:
                    batch = events("bench", KINDS[kind], args.events)
                    seconds[kind].append(await write(runtimes[kind], batch, args.group))
            frames = {
                kind: await wal_frames_per_commit(
                    runtimes[kind], paths[kind], KINDS[kind], args.group
                )
                for kind in KINDS
            }
            rates = {}
            for kind in KINDS:
                total = args.events * args.rounds / sum(seconds[kind])
                median = args.events / statistics.median(seconds[kind])
                rates[kind] = total
                database_mb, wal_mb = sizes(paths[kind])
                print(
                    f"  {kind}: {total:9.0f} events/s (median round {median:7.0f}), "
                    f"{frames[kind]:6.1f} WAL pages per transaction, "
                    f"database {database_mb:6.1f} MB, WAL {wal_mb:5.1f} MB"
                )
            print(
                f"uuid7 / uuid4 insert rate: {rates['uuid7'] / rates['uuid4']:.2f}x; "
                "WAL pages per transaction, uuid4 / uuid7: "
                f"{frames['uuid4'] / frames['uuid7']:.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefill", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--group", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()

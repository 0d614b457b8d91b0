"""`serve` killed with SIGKILL under concurrent ingest (single events and batches), then started
again: every event it acknowledged (201/200, or "created"/"duplicate" in a batch) is stored, on
both databases. The answer is sent only after the commit (events/writer.py), so a crash can
lose only what was never acknowledged. The worker-side crash is tests/delivery/test_crash.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy import select

from event_collector.kit.db import Database
from event_collector.models import event_table
from tests.conftest import make_settings, wait_until
from tests.hardening.processes import Load, Service, bearer_headers, provision

logger = logging.getLogger(__name__)


async def test_a_killed_server_loses_no_acknowledged_event(
    empty_database_url: str, tmp_path: Path
) -> None:
    key_dir = tmp_path / "keys"
    db = Database.from_settings(make_settings(empty_database_url, key_dir))
    try:
        form = await provision(db, "crash")
        service = Service(empty_database_url, key_dir, tmp_path / "serve.log")
        service.start()
        try:
            headers = await bearer_headers(service.base, form, "crash")
            load = Load(service.base, headers, form, batch_size=20)
            running = asyncio.create_task(load.run(singles=6, batches=3, readers=0))
            await wait_until(lambda: len(load.acknowledged) >= 300, "ingest is flowing", within=30)
            await asyncio.to_thread(service.kill)  # requests in flight, groups mid-commit
            acknowledged_at_kill = len(load.acknowledged)
            await wait_until(
                lambda: sum(a.status == 0 for a in load.answers) >= 3,
                "the clients see the server gone",
            )
            load.stopping = True
            await running
            # Nothing can be acknowledged after the kill (allowing for answers in flight).
            assert len(load.acknowledged) - acknowledged_at_kill <= 9 * 20
            await asyncio.to_thread(service.start)
        finally:
            service.stop()
        async with db.read() as conn:
            stored = set(
                (
                    await conn.execute(
                        select(event_table.c.id).where(event_table.c.tenant == "crash")
                    )
                ).scalars()
            )
    finally:
        await db.dispose()
    lost = load.acknowledged - stored
    assert not lost, f"{len(lost)} of {len(load.acknowledged)} acknowledged events lost"
    logger.warning(
        "%d acknowledged, %d stored (the rest were in flight, never acknowledged), 0 lost",
        len(load.acknowledged),
        len(stored),
    )

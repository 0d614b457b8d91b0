"""SMTP through a real aiosmtpd server; a run killed mid-send and taken over; two runs racing."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from event_collector.models.notifications import notification_ledger_table
from event_collector.notifications.service import LEASE
from tests.notifications.helpers import Shop, job, many_shoppers, notifications, run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """Stores what it accepts; can hold the n-th message (then refuse it) to stage a crash."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self.seen = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen += 1
        if self.seen == self.hold_at:
            self.holding.set()
            await asyncio.to_thread(self.release.wait, 30)
            return "451 4.3.0 aborted"
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def recipients(self) -> list[str]:
        return sorted(str(m["To"]).rpartition("<")[2].rstrip(">") for m in self.messages)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    box.release.set()
    controller.stop()


async def _smtp_shop(client, tenant, context, port: int, customers: int) -> tuple[Any, list[str]]:
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1", title="Red <shoes>")
    await shop.price("v1", "10.00")
    ids = await many_shoppers(shop, customers, "v1")
    await shop.price("v1", "10.00", "5.00")
    response = await client.put(
        "/api/v1/email-settings",
        json={"provider": "smtp", "sender_email": "shop@example.com", "sender_name": "Shop"},
        headers=tenant.headers,
    )
    assert response.status_code == 200
    settings = context.settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    return settings, ids


async def test_smtp_sends_multipart_text_and_html(client, tenant, context, mailbox) -> None:
    box, port = mailbox
    settings, ids = await _smtp_shop(client, tenant, context, port, 3)
    outcome = await run(context, tenant, job("PRICE_DROP"), run_id="r1", settings=settings)
    assert outcome.counts["sent"] == 3
    assert box.recipients() == sorted(f"{c}@example.com" for c in ids)
    email = box.messages[0]
    assert email.get_content_type() == "multipart/alternative"
    assert str(email["From"]) == "Shop <shop@example.com>"
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert "Red <shoes>" in text
    assert "Red &lt;shoes&gt;" in html
    assert "utm_campaign=spring" in text
    stored = await notifications(client, tenant, run_id="r1")
    assert {n["status"] for n in stored} == {"sent"}
    assert all(n["html"] for n in stored)
    assert {n["provider_message_id"] for n in stored} == {
        str(m["Message-ID"]) for m in box.messages
    }


async def test_unreachable_smtp_fails_each_send_and_releases_its_claims(
    client, tenant, context
) -> None:
    settings, _ = await _smtp_shop(client, tenant, context, free_port(), 2)
    outcome = await run(context, tenant, job("PRICE_DROP"), run_id="r1", settings=settings)
    assert outcome.counts["errors"] == 2
    assert outcome.counts["sent"] == 0
    failed = await notifications(client, tenant, status="failed")
    assert len(failed) == 2
    assert "connection" in failed[0]["error"]
    async with context.db.read() as conn:
        ledger = notification_ledger_table
        claims = await conn.scalar(
            select(func.count()).select_from(ledger).where(ledger.c.tenant == tenant.name)
        )
    assert claims == 0


async def test_run_killed_mid_send_is_taken_over_and_sends_each_message_once(
    client, tenant, context, mailbox
) -> None:
    box, port = mailbox
    settings, ids = await _smtp_shop(client, tenant, context, port, 5)
    box.hold_at = 3
    now = datetime.now(UTC) + timedelta(seconds=1)
    crashed = asyncio.create_task(
        run(context, tenant, job("PRICE_DROP"), run_id="r1", settings=settings, now=now)
    )
    assert await asyncio.to_thread(box.holding.wait, 30)
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    box.release.set()
    assert len(box.messages) == 2
    # Before the dead run's lease expires nobody takes its notifications over.
    early = await run(context, tenant, job("PRICE_DROP"), run_id="r1", settings=settings, now=now)
    assert early.counts["sent"] == 0
    assert len(box.messages) == 2
    # The job's next run (or this one resumed) sends what the dead run left.
    later = now + LEASE + timedelta(seconds=1)
    outcome = await run(
        context, tenant, job("PRICE_DROP"), run_id="r2", settings=settings, now=later
    )
    assert outcome.counts["sent"] == 3
    assert outcome.counts["messages"] == 0
    assert box.recipients() == sorted(f"{c}@example.com" for c in ids)
    stored = await notifications(client, tenant, run_id="r1")
    assert len(stored) == 5
    assert {n["status"] for n in stored} == {"sent"}


async def test_two_runs_racing_notify_each_customer_once(client, tenant, context) -> None:
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "10.00")
    ids = await many_shoppers(shop, 300, "v1")
    await shop.price("v1", "10.00", "5.00")
    first, second = await asyncio.gather(
        run(context, tenant, job("PRICE_DROP"), run_id="a"),
        run(context, tenant, job("PRICE_DROP"), run_id="b"),
    )
    assert first.counts["sent"] + second.counts["sent"] == len(ids)
    stored = await notifications(client, tenant, limit=500)
    assert sorted(n["customer_id"] for n in stored) == ids
    async with context.db.read() as conn:
        ledger = notification_ledger_table
        claims = await conn.scalar(
            select(func.count()).select_from(ledger).where(ledger.c.tenant == tenant.name)
        )
    assert claims == len(ids)

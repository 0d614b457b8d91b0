"""SendGrid v3 through a loopback HTTP server that checks every request against the reference
shape (../shared/reference/sendgrid-mail-send.md) and answers 202, 429, 500, 202, 400 in turn."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from event_collector.kit.errors import BadRequest
from event_collector.notifications.email_settings import UNREADABLE_KEY
from tests.notifications.helpers import (
    Shop,
    job,
    many_shoppers,
    notifications,
    run,
    seal_with_a_removed_key,
)

KEY = "SG.test-key-abcdefghijklmnop"


class SendGridSink:
    def __init__(self, answers: list[int]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[float, dict[str, Any], int]] = []
        self.problems: list[str] = []

    def check(self, request: web.Request, body: dict[str, Any]) -> None:
        def expect(condition: bool, problem: str) -> None:
            if not condition:
                self.problems.append(problem)

        expect(request.headers.get("Authorization") == f"Bearer {KEY}", "Authorization")
        expect(request.content_type == "application/json", "Content-Type")
        expect("content-encoding" not in request.headers, "no gzip")
        expect(body["from"]["email"] == "shop@example.com", "from")
        expect(body.get("reply_to") == {"email": "help@example.com"}, "reply_to")
        personalizations = body["personalizations"]
        expect(1 <= len(personalizations) <= 1000, "1..1000 personalizations")
        expect(sum(len(p["to"]) for p in personalizations) <= 1000, "<= 1000 recipients")
        expect(body.get("template_id") == "d-123", "template_id")
        categories = body.get("categories", [])
        expect(len(categories) <= 10 and not any("@" in c for c in categories), "categories")
        for p in personalizations:
            expect(len(p["to"]) == 1 and "@" in p["to"][0]["email"], "one recipient")
            args = p["custom_args"]
            expect(set(args) == {"tenant", "job_id", "run_id", "notification_id"}, "custom_args")
            expect(all(isinstance(v, str) for v in args.values()), "custom_args strings")
            expect(not any("@" in v for v in args.values()), "no PII in custom_args")
            data = p["dynamic_template_data"]
            expect(data["notification_type"] == "PRICE_DROP", "notification_type")
            expect(data["customer"]["email"] == p["to"][0]["email"], "customer")
            expect(data["campaign"]["id"] == "spring", "campaign")
            item = data["items"][0]
            expect(item["old_price"] == "10.00" and item["new_price"] == "5.00", "prices")
            expect("utm_campaign=spring" in item["link"], "utm link")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.check(request, body)
        status = self.answers.pop(0) if self.answers else 202
        self.requests.append((time.monotonic(), body, status))
        if status == 202:
            return web.Response(status=202, headers={"X-Message-Id": f"msg-{len(self.requests)}"})
        if status == 429:
            return web.json_response(
                {"errors": [{"message": "too many requests"}]},
                status=429,
                headers={"Retry-After": "1"},
            )
        message = "bad request" if status == 400 else "oops"
        return web.json_response({"errors": [{"message": message, "field": None}]}, status=status)


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[tuple[SendGridSink, str]]:
    recorder = SendGridSink([202, 429, 500, 202, 400])
    application = web.Application()
    application.router.add_post("/v3/mail/send", recorder.handle)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield recorder, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_batches_retries_and_per_send_outcomes(client, tenant, context, sink, caplog) -> None:
    recorder, url = sink
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "10.00")
    customers = await many_shoppers(shop, 2001, "v1")
    await shop.price("v1", "10.00", "5.00")
    response = await client.put(
        "/api/v1/email-settings",
        json={
            "provider": "sendgrid",
            "sender_email": "shop@example.com",
            "reply_to_email": "help@example.com",
            "sendgrid_api_key": KEY,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200
    settings = context.settings.model_copy(update={"sendgrid_api_url": url})
    the_job = job("PRICE_DROP", template_id="d-123")
    outcome = await run(
        context, tenant, the_job, run_id="r1", settings=settings, sendgrid_backoff_seconds=0.01
    )
    assert recorder.problems == []
    statuses = [status for _, _, status in recorder.requests]
    assert statuses == [202, 429, 500, 202, 400]
    sizes = [len(body["personalizations"]) for _, body, _ in recorder.requests]
    assert sizes == [1000, 1000, 1000, 1000, 1]
    # Retry-After: 1 was honoured between the 429 and the next attempt.
    assert recorder.requests[2][0] - recorder.requests[1][0] >= 0.95
    assert outcome.counts["sent"] == 2000
    assert outcome.counts["errors"] == 1

    sent = await notifications(client, tenant, run_id="r1", status="sent", limit=500)
    assert {n["provider_message_id"] for n in sent} <= {"msg-1", "msg-4"}
    [failed] = await notifications(client, tenant, run_id="r1", status="failed")
    assert failed["error"] == "SendGrid 400: bad request"
    assert failed["attempts"] == 1
    assert failed["subject"] is None  # SendGrid renders its own template
    ids = {
        p["custom_args"]["notification_id"]
        for _, body, status in recorder.requests
        if status == 202
        for p in body["personalizations"]
    }
    assert len(ids) == 2000
    assert json.dumps([body for _, body, _ in recorder.requests]).count(KEY) == 0
    assert KEY not in caplog.text

    # The 400 was certainly not sent: its claim was released, so the next run sends it;
    # everything else is in the ledger and is not sent again.
    outcome = await run(
        context, tenant, the_job, run_id="r2", settings=settings, sendgrid_backoff_seconds=0.01
    )
    assert outcome.counts["sent"] == 1
    _, body, _ = recorder.requests[-1]
    assert [p["to"][0]["email"] for p in body["personalizations"]] == [failed["recipient"]]
    assert failed["customer_id"] in customers


async def test_dry_run_shows_the_template_data(client, tenant, context) -> None:
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "10.00")
    await many_shoppers(shop, 2, "v1")
    await shop.price("v1", "10.00", "5.00")
    await client.put(
        "/api/v1/email-settings",
        json={"provider": "sendgrid", "sendgrid_api_key": KEY},
        headers=tenant.headers,
    )
    outcome = await run(context, tenant, job("PRICE_DROP", template_id="d-1"), dry_run=True)
    [first, _] = outcome.messages
    assert first["channels"] == ["sendgrid"]
    assert first["template_id"] == "d-1"
    assert first["dynamic_template_data"]["items"][0]["saving"] == "5.00"
    assert await notifications(client, tenant) == []


async def test_sendgrid_without_a_key_refuses_the_run_before_claiming(
    client, tenant, context
) -> None:
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "10.00")
    await many_shoppers(shop, 1, "v1")
    await shop.price("v1", "10.00", "5.00")
    await client.put(
        "/api/v1/email-settings", json={"provider": "sendgrid"}, headers=tenant.headers
    )
    with pytest.raises(BadRequest, match="no API key"):
        await run(context, tenant, job("PRICE_DROP", template_id="d-1"), run_id="r1")
    assert await notifications(client, tenant) == []


async def test_a_key_no_secret_key_opens_fails_each_send_visibly(
    client, tenant, context, sink
) -> None:
    """The stored SendGrid key cannot be opened: the run goes on, nothing reaches SendGrid (nor
    goes out with the server's key), each notification fails saying why and what to do, and
    its claim is released so a run after the fix sends it."""
    recorder, url = sink
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "10.00")
    await many_shoppers(shop, 3, "v1")
    await shop.price("v1", "10.00", "5.00")
    body = {
        "provider": "sendgrid",
        "sender_email": "shop@example.com",
        "reply_to_email": "help@example.com",
        "sendgrid_api_key": KEY,
    }
    await client.put("/api/v1/email-settings", json=body, headers=tenant.headers)
    await seal_with_a_removed_key(context, tenant.name)
    settings = context.settings.model_copy(
        update={"sendgrid_api_url": url, "sendgrid_api_key": "SG.server-key-0123456789"}
    )
    the_job = job("PRICE_DROP", template_id="d-123")
    outcome = await run(context, tenant, the_job, run_id="r1", settings=settings)
    assert outcome.counts["errors"] == 3
    assert outcome.counts["sent"] == 0
    assert recorder.requests == []
    failed = await notifications(client, tenant, run_id="r1", status="failed")
    assert [n["error"] for n in failed] == [UNREADABLE_KEY] * 3

    await client.put("/api/v1/email-settings", json=body, headers=tenant.headers)
    outcome = await run(context, tenant, the_job, run_id="r2", settings=settings)
    assert outcome.counts["sent"] == 3
    assert recorder.problems == []

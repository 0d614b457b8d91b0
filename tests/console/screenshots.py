"""Screenshots of every console page at desktop and phone width, into docs/console/.

Not part of the suite (the name does not start with test_): run ``./scripts/screenshots``.
It seeds one tenant (a webhook subscription with a delivered event and a dead letter, a
customer with a wishlist, a PRICE_DROP job that has run) and photographs each page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import wait_until
from tests.console.conftest import LiveConsole, Receiver, sign_in
from tests.notifications.helpers import Shop
from tests.read_model.helpers import post

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


async def test_screenshots(live: LiveConsole, receiver: Receiver, browser: Any) -> None:
    tenant = await live.tenant()
    http = live.http
    subscription = {
        "id": "orders-webhook",
        "entityType": "ORDER",
        "destination": {"type": "WEBHOOK", "webhook": {"url": receiver.url}},
    }
    response = await http.post(
        "/api/v1/event-subscription", json=subscription, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    await post(
        http,
        tenant,
        "ORDER",
        "CREATE",
        {"id": "o-1001", "total": 129.5, "currency": "AUD"},
        entity_id="o-1001",
    )
    await wait_until(lambda: len(receiver.bodies) >= 1, "the first event is delivered")
    receiver.broken = True
    await post(
        http, tenant, "ORDER", "UPDATE", {"id": "o-1002", "status": "PAID"}, entity_id="o-1002"
    )

    async def dead() -> bool:
        page = await http.get(
            "/api/v1/deliveries", params={"status": "failed"}, headers=tenant.headers
        )
        return bool(page.json()["items"])

    for _ in range(200):
        if await dead():
            break
        await asyncio.sleep(0.05)  # polling the condition, not a guessed duration
    receiver.broken = False
    shop = Shop(http, tenant)
    await shop.product("p1")
    await shop.variant("v1", title="Linen shirt")
    await shop.price("v1", "100.00")
    await shop.shopper("c1", ["v1"])
    await shop.stock("v1", 3)
    await shop.price("v1", "100.00", "79.00")
    job = {
        "id": "price-drops",
        "notification": "PRICE_DROP",
        "schedule": "0 9 * * 1-5",
        "timezone": "Australia/Sydney",
        "template_id": "d-price-drop",
        "job_parameters": {"campaign_id": "spring"},
    }
    assert (await http.post("/api/v1/jobs", json=job, headers=tenant.headers)).status_code == 201

    pages = {
        "sign-in": "/console/sign-in",
        "dashboard": "/console",
        "subscriptions": "/console/subscriptions",
        "subscription": "/console/subscriptions/orders-webhook",
        "deliveries": "/console/deliveries?status=failed",
        "events": "/console/events",
        "jobs": "/console/jobs",
        "job": "/console/jobs/price-drops",
        "notifications": "/console/notifications",
        "customers": "/console/customers?q=c1",
    }
    DOCS.mkdir(parents=True, exist_ok=True)
    for width_name, (width, height) in WIDTHS.items():
        context = await browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        await page.goto(f"{live.base_url}{pages['sign-in']}")
        await page.screenshot(path=str(DOCS / f"sign-in-{width_name}.png"), full_page=True)
        await sign_in(page, live.base_url, tenant)
        for name, path in pages.items():
            if name == "sign-in":
                continue
            await page.goto(f"{live.base_url}{path}")
            await page.screenshot(path=str(DOCS / f"{name}-{width_name}.png"), full_page=True)
        await page.goto(f"{live.base_url}/console/events")
        await page.locator("table a.mono").first.click()
        await page.screenshot(path=str(DOCS / f"event-{width_name}.png"), full_page=True)
        await page.goto(f"{live.base_url}/console/jobs/price-drops")
        await page.get_by_role("button", name="Dry run (preview emails)").click()
        await page.screenshot(path=str(DOCS / f"dry-run-{width_name}.png"), full_page=True)
        await context.close()

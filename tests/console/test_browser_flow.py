"""The issue's operator flow in a real browser (headless chromium): sign in, create a webhook
subscription, see an event delivered, the receiver breaks, see the dead letter and why, fix the
subscription (its secret kept), replay, see it delivered; create a job, dry-run it, see the
rendered email, run it, see it in the ledger; look the customer up; sign out."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.async_api import expect
from standardwebhooks import Webhook

from tests.conftest import wait_until
from tests.console.conftest import LiveConsole, Receiver, sign_in
from tests.notifications.helpers import Shop
from tests.read_model.helpers import post


# With JavaScript off too: every step works with plain forms and links.
@pytest.mark.parametrize("page", [True, False], ids=["js", "no-js"], indirect=True)
async def test_operator_flow(live: LiveConsole, receiver: Receiver, page: Any) -> None:
    tenant = await live.tenant()
    base = live.base_url
    await sign_in(page, base, tenant)

    # A webhook subscription to the loopback receiver, through the form.
    await page.get_by_role("link", name="Subscriptions").click()
    await page.get_by_role("link", name="New subscription").click()
    await page.get_by_role("textbox", name=re.compile("^Id")).fill("orders-hook")
    await page.get_by_label("Entity type").select_option("ORDER")
    await page.get_by_label("URL", exact=True).fill(receiver.url)
    await page.get_by_role("button", name="Create subscription").click()
    await expect(page.get_by_text("The generated signing secret")).to_be_visible()
    secret = await page.locator(".secret").inner_text()
    assert secret.startswith("whsec_")

    # An event through the API: delivered, and the console shows it with its payload.
    await post(live.http, tenant, "ORDER", "CREATE", {"id": "o-1", "total": 12}, entity_id="o-1")
    await wait_until(lambda: len(receiver.received) == 1, "the receiver got the event")
    await page.goto(f"{base}/console/events")
    await page.locator("table a.mono").first.click()
    await expect(page.get_by_text('"total": 12')).to_be_visible()
    await expect(page.locator("td .tag.ok", has_text="delivered")).to_be_visible()

    # The receiver's endpoint breaks: the next event dead-letters after its retries.
    receiver.broken_paths.add("/hook")
    await post(live.http, tenant, "ORDER", "CREATE", {"id": "o-2"}, entity_id="o-2")
    await _until_listed(page, f"{base}/console/deliveries?status=failed", "dead letter")
    await expect(page.get_by_role("cell", name=re.compile("HTTP 500"))).to_be_visible()
    await page.get_by_text("3 attempt(s)").click()
    await expect(page.get_by_role("cell", name="retry").first).to_be_visible()

    # Why: the subscription's page says so. Fix it (a new URL; the secret left blank is kept).
    await page.get_by_role("link", name="orders-hook").first.click()
    await expect(page.locator("dl.facts")).to_contain_text("HTTP 500")
    await expect(page.get_by_label(re.compile("^Signing secret"))).to_have_value("")
    await page.get_by_label("URL", exact=True).fill(f"{receiver.base_url}/hook-v2")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Subscription saved.")
    await page.get_by_role("button", name="Send a test message").click()
    await expect(page.get_by_role("status")).to_contain_text("Test message delivered")

    # Replay the dead letter: delivered to the new URL, signed with the same secret.
    await page.goto(f"{base}/console/deliveries?status=failed")
    await page.get_by_role("button", name="Replay this delivery").click()
    await expect(page.get_by_role("status")).to_contain_text("1 delivery(ies) queued again")
    await _until_listed(page, f"{base}/console/deliveries?status=delivered", "delivered", rows=2)
    replayed = [r for r in receiver.received if r.path == "/hook-v2" and b"o-2" in r.body]
    assert replayed, "the replayed delivery reached the fixed URL"
    Webhook(secret).verify(replayed[0].body, replayed[0].headers)
    assert json.loads(replayed[0].body)

    # The subscription list shows its health.
    await page.goto(f"{base}/console/subscriptions")
    await expect(page.get_by_role("row", name=re.compile("orders-hook"))).to_contain_text("%")

    # A PRICE_DROP job: dry-run shows the rendered email and sends nothing; run now sends it.
    shop = Shop(live.http, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "100.00")
    await shop.shopper("c1", ["v1"])
    await shop.price("v1", "100.00", "89.00")
    await page.get_by_role("link", name="Jobs").click()
    await page.get_by_role("link", name="New job").click()
    await page.get_by_role("textbox", name=re.compile("^Id")).fill("drops")
    await page.get_by_label("Notification").select_option("PRICE_DROP")
    await page.get_by_label("Schedule (5-field cron").fill("0 9 * * *")
    await page.get_by_label("SendGrid template id").fill("d-drops")
    await page.get_by_role("button", name="Create job").click()
    await expect(page.get_by_role("status")).to_have_text("Job created.")
    await expect(page.get_by_text("At 09:00")).to_be_visible()
    await page.get_by_role("button", name="Dry run (preview emails)").click()
    await expect(page.get_by_role("heading", name="To c1@example.com")).to_be_visible()
    preview = page.frame_locator("iframe.preview").first
    await expect(preview.locator("body")).to_contain_text("89.00")
    await page.goto(f"{base}/console/notifications")
    await expect(page.get_by_text("No notifications match.")).to_be_visible()

    await page.goto(f"{base}/console/jobs/drops")
    await page.get_by_role("button", name="Run now").click()
    await expect(page.get_by_role("status")).to_contain_text("queued")
    for _ in range(100):
        await page.goto(f"{base}/console/notifications")
        if await page.locator(".tag.ok", has_text="sent").count():
            break
        await page.wait_for_timeout(100)
    await expect(page.get_by_role("heading", name="PRICE_DROP to c1@example.com")).to_be_visible()
    await expect(page.frame_locator("iframe.preview").first.locator("body")).to_contain_text(
        "89.00"
    )

    # The customer's wishlist with price, baseline and stock.
    await page.get_by_role("link", name="Customers").click()
    await page.get_by_label("Customer id or ref").fill("c1")
    await page.get_by_role("button", name="Look up").click()
    row = page.get_by_role("row", name=re.compile("Title v1"))
    await expect(row).to_contain_text("89.00 AUD")  # the current (sale) price
    await expect(row).to_contain_text("100.00 AUD")  # the baseline

    # Sign out: the console asks for credentials again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(f"{base}/console/subscriptions")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def _until_listed(page: Any, url: str, status_text: str, rows: int = 1) -> None:
    """Reload the list until ``rows`` deliveries show ``status_text`` (the dispatcher works in
    the background; the page is server-rendered)."""
    found = 0
    for _ in range(100):
        await page.goto(url)
        found = await page.locator("td .tag", has_text=status_text).count()
        if found >= rows:
            return
        await page.wait_for_timeout(100)
    raise AssertionError(f"{url} never listed {rows} row(s) {status_text!r} (saw {found})")

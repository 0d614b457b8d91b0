"""Every console page: answers 200, has its landmarks and one heading, labels every form
control, and fits a phone's width without scrolling sideways. Plus the forms the operator
flow does not use (replay since, activate/deactivate, edit and delete a job)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import TenantFixture, wait_until
from tests.console.conftest import LiveConsole, Receiver, sign_in
from tests.read_model.helpers import post

UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button')]
  .filter(e => !e.closest('[hidden]'))
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !(e.tagName === 'BUTTON' && e.textContent.trim()))
  .map(e => e.outerHTML)"""


async def _seed(live: LiveConsole, receiver: Receiver, tenant: TenantFixture) -> None:
    subscription = {
        "id": "pages-hook",
        "entityType": "ORDER",
        "destination": {"type": "WEBHOOK", "webhook": {"url": receiver.url}},
    }
    response = await live.http.post(
        "/api/v1/event-subscription", json=subscription, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    await post(live.http, tenant, "ORDER", "CREATE", {"id": "o-1"}, entity_id="o-1")
    await wait_until(lambda: len(receiver.received) == 1, "the event is delivered")
    job = {
        "id": "pages-job",
        "notification": "REMINDER",
        "schedule": "30 8 * * 1",
        "template_id": "d-1",
    }
    assert (await live.http.post("/api/v1/jobs", json=job, headers=tenant.headers)).is_success


PAGES = [
    "/console",
    "/console/subscriptions",
    "/console/subscriptions/new",
    "/console/subscriptions/pages-hook",
    "/console/deliveries?status=",
    "/console/events",
    "/console/jobs",
    "/console/jobs/new",
    "/console/jobs/pages-job",
    "/console/notifications",
    "/console/customers",
]


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
async def test_every_page_is_labelled_and_fits(
    live: LiveConsole, receiver: Receiver, page: Any, width: int
) -> None:
    tenant = await live.tenant()
    await _seed(live, receiver, tenant)
    await page.set_viewport_size({"width": width, "height": 800})
    await sign_in(page, live.base_url, tenant)
    for path in PAGES:
        response = await page.goto(f"{live.base_url}{path}")
        assert response.status == 200, path
        assert await page.locator("main").count() == 1, path
        assert await page.get_by_role("navigation", name="Console").count() == 1, path
        assert await page.locator("h1").count() == 1, path
        assert await page.evaluate(UNLABELLED) == [], path
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"


async def test_other_forms(live: LiveConsole, receiver: Receiver, page: Any) -> None:
    tenant = await live.tenant()
    await _seed(live, receiver, tenant)
    base = live.base_url
    await sign_in(page, base, tenant)

    # Deactivate and activate a subscription.
    await page.goto(f"{base}/console/subscriptions/pages-hook")
    await page.get_by_role("button", name="Deactivate").click()
    await expect(page.get_by_role("status")).to_have_text("Subscription deactivated.")
    await page.goto(f"{base}/console/subscriptions")
    await expect(page.get_by_role("row", name=re.compile("pages-hook"))).to_contain_text("inactive")
    await page.goto(f"{base}/console/subscriptions/pages-hook")
    await page.get_by_role("button", name="Activate").click()
    await expect(page.get_by_role("status")).to_have_text("Subscription activated.")

    # Replay since a time (everything delivered since 2000): queued again, delivered again.
    await page.goto(f"{base}/console/deliveries?status=delivered")
    await page.get_by_label("Created since (UTC)").fill("2000-01-01T00:00")
    await page.get_by_label("Which").select_option("all")
    await page.get_by_role("button", name="Replay", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text("1 delivery(ies) of pages-hook")
    await wait_until(lambda: len(receiver.received) == 2, "the replay is delivered")

    # Events filters: by entity id; a bad time is a 400 page that says why.
    await page.goto(f"{base}/console/events?entity_id=o-1")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await page.goto(f"{base}/console/events?entity_id=nothing")
    await expect(page.get_by_text("No events match.")).to_be_visible()
    response = await page.goto(f"{base}/console/events?since=yesterday")
    assert response.status == 400
    await expect(page.get_by_role("alert")).to_contain_text("since")

    # Edit a job: the schedule in words follows; a bad schedule is refused; delete it.
    await page.goto(f"{base}/console/jobs/pages-job")
    await expect(page.get_by_text("At 08:30 on Monday")).to_be_visible()
    await page.get_by_label("Schedule (5-field cron").fill("0 7 * * *")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Job saved.")
    await expect(page.get_by_text("At 07:00")).to_be_visible()
    await page.get_by_label("Schedule (5-field cron").fill("not a schedule")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("schedule")
    await page.goto(f"{base}/console/jobs/pages-job")
    await page.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status")).to_have_text("Job pages-job deleted.")
    await expect(page.get_by_text("No jobs yet.")).to_be_visible()

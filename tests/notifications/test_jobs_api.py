"""The notification runner plugged into the Jobs API (EC_JOBS_RUNNER): a dry run through
POST /api/v1/jobs/{id}/run?dry_run=true returns the rendered messages and records nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from fastapi import FastAPI

from event_collector.app import create_app
from tests.conftest import make_settings
from tests.jobs.helpers import seed_shaped
from tests.notifications.helpers import Shop, notifications


@pytest_asyncio.fixture(scope="module")
async def app(database_url: str, key_dir: Path) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url, key_dir, jobs_runner="event_collector.notifications.runner:create_runner"
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_dry_run_through_the_jobs_api(client, tenant) -> None:
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "10.00")
    await shop.shopper("c1", ["v1"])
    await shop.price("v1", "10.00", "5.00")
    body = seed_shaped(notification="PRICE_DROP", template_id="no-such-local-template")
    created = await client.post("/api/v1/jobs", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    dry = await client.post(
        f"/api/v1/jobs/{body['id']}/run", params={"dry_run": "true"}, headers=tenant.headers
    )
    assert dry.status_code == 200, dry.text
    [message] = dry.json()["messages"]
    assert message["recipient"] == "c1@example.com"
    assert "5.00" in message["text"]
    assert message["html"].startswith("<!doctype html>")
    assert dry.json()["counts"]["customers_eligible"] == 1
    assert await notifications(client, tenant) == []

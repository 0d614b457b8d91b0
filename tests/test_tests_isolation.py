"""The suite's own isolation (tests/conftest.py): the subscriptions of the tenants a test made
are inactive once it has ended, so no later module's dispatcher sends their deliveries."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from event_collector.models import subscription_table as s
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.delivery.helpers import create_subscription

# backend → (tenant, subscription) the first test left behind, for the second to look at.
_LEFT: dict[str, tuple[str, str]] = {}


async def _active(context: Runtime, tenant: str, subscription_id: str) -> bool:
    async with context.db.read() as conn:
        row = await conn.execute(
            select(s.c.active).where(s.c.tenant == tenant, s.c.id == subscription_id)
        )
        return bool(row.scalar_one())


async def test_a_test_leaves_an_active_subscription(
    context: Runtime, tenant: TenantFixture, backend: str
) -> None:
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": "https://hooks.example.com/left-behind"}
    )
    assert await _active(context, tenant.name, sub)
    _LEFT[backend] = (tenant.name, sub)


async def test_it_is_inactive_once_that_test_ended(context: Runtime, backend: str) -> None:
    if backend not in _LEFT:
        pytest.skip("looks at what the test before it left (run the module)")
    assert not await _active(context, *_LEFT[backend])

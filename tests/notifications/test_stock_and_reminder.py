"""BACK_IN_STOCK, LOW_STOCK and REMINDER (DESIGN §6.3) on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.notifications.helpers import Shop, job, notifications, run


async def _shop(client, tenant, *variants: str) -> Shop:
    shop = Shop(client, tenant)
    await shop.product("p1")
    for variant in variants:
        await shop.variant(variant)
        await shop.price(variant, "10.00")
    return shop


def _items(outcome) -> list[str]:
    return [i["item_id"] for m in outcome.messages for i in m["items"]]


async def test_back_in_stock_once_per_restock_episode(client, tenant, context) -> None:
    shop = await _shop(client, tenant, "v1")
    await shop.shopper("c1", ["v1"])
    await shop.stock("v1", 5)  # the first quantity known fires nothing
    assert (await run(context, tenant, job("BACK_IN_STOCK"), run_id="r0")).counts["messages"] == 0
    await shop.stock("v1", 0)
    await shop.stock("v1", 3)
    outcome = await run(context, tenant, job("BACK_IN_STOCK"), run_id="r1")
    assert outcome.counts["sent"] == 1
    assert (await run(context, tenant, job("BACK_IN_STOCK"), run_id="r2")).counts["messages"] == 0
    await shop.stock("v1", 7)  # still the same episode
    assert (await run(context, tenant, job("BACK_IN_STOCK"), run_id="r3")).counts["messages"] == 0
    await shop.stock("v1", 0)
    await shop.stock("v1", 2)  # a new episode
    assert (await run(context, tenant, job("BACK_IN_STOCK"), run_id="r4")).counts["sent"] == 1
    sent = await notifications(client, tenant, job_id="job-1")
    assert [n["run_id"] for n in sent] == ["r1", "r4"]


async def test_back_in_stock_threshold_precedence_and_notify_me_first(
    client, tenant, context
) -> None:
    shop = await _shop(client, tenant, "v1", "v2", "v3")
    await shop.shopper("c1", ["v1", "v2", "v3"])
    await shop.item("c1-v3", "w-c1", "v3", notifyMe=True)
    await shop.variant("v2", backInStockThreshold=4)  # variant beats product and job
    await shop.product("p1", backInStockThreshold=2)
    for variant in ("v1", "v2", "v3"):
        await shop.stock(variant, 0)
        await shop.stock(variant, 3)
    outcome = await run(
        context, tenant, job("BACK_IN_STOCK", back_in_stock_threshold=9), dry_run=True
    )
    # v2 needs 4 (its own), v1/v3 need 2 (the product's; the job's 9 is only a fallback).
    assert _items(outcome) == ["c1-v3", "c1-v1"]
    await shop.product("p1", backInStockThreshold=None)
    outcome = await run(
        context, tenant, job("BACK_IN_STOCK", back_in_stock_threshold=9), dry_run=True
    )
    assert _items(outcome) == []
    outcome = await run(
        context, tenant, job("BACK_IN_STOCK", back_in_stock_threshold=3), dry_run=True
    )
    assert _items(outcome) == ["c1-v3", "c1-v1"]


async def test_low_stock_once_per_downward_crossing_rearmed_above(client, tenant, context) -> None:
    shop = await _shop(client, tenant, "v1")
    await shop.shopper("c1", ["v1"])
    await shop.stock("v1", 20)
    await shop.stock("v1", 4)
    outcome = await run(context, tenant, job("LOW_STOCK"), run_id="r1")
    assert outcome.counts["sent"] == 1
    [sent] = await notifications(client, tenant, run_id="r1")
    assert sent["items"][0]["stock"] == 4
    assert "only 4 left" in sent["text"]
    await shop.stock("v1", 3)  # lower, same episode
    assert (await run(context, tenant, job("LOW_STOCK"), run_id="r2")).counts["messages"] == 0
    await shop.stock("v1", 0)
    assert (await run(context, tenant, job("LOW_STOCK"), run_id="r3")).counts["messages"] == 0
    await shop.stock("v1", 30)  # re-armed
    await shop.stock("v1", 2)
    assert (await run(context, tenant, job("LOW_STOCK"), run_id="r4")).counts["sent"] == 1


async def test_low_stock_threshold_from_job_parameter_and_lowest_stock_first(
    client, tenant, context
) -> None:
    shop = await _shop(client, tenant, "v1", "v2")
    await shop.shopper("c1", ["v1", "v2"])
    for variant, low in (("v1", 4), ("v2", 2)):
        await shop.stock(variant, 50)
        await shop.stock(variant, low)
    outcome = await run(context, tenant, job("LOW_STOCK"), dry_run=True)
    assert _items(outcome) == ["c1-v2", "c1-v1"]
    outcome = await run(context, tenant, job("LOW_STOCK", low_stock_threshold=3), dry_run=True)
    assert _items(outcome) == ["c1-v2"]


async def test_reminder_most_recent_first_with_cooldown(client, tenant, context) -> None:
    shop = await _shop(client, tenant, "v1", "v2", "v3")
    await shop.customer("c1")
    await shop.wishlist("w1", "c1")
    for day, variant in enumerate(("v1", "v2", "v3"), start=1):
        created = datetime(2026, 11, day, tzinfo=UTC).isoformat()
        await shop.item(f"i-{variant}", "w1", variant, createdTime=created)
    now = datetime.now(UTC) + timedelta(seconds=1)
    outcome = await run(context, tenant, job("REMINDER", items=2), run_id="r1", now=now)
    assert outcome.counts["sent"] == 1
    [sent] = await notifications(client, tenant, run_id="r1")
    assert [i["item_id"] for i in sent["items"]] == ["i-v3", "i-v2"]
    later = now + timedelta(days=6)
    outcome = await run(context, tenant, job("REMINDER", items=2), run_id="r2", now=later)
    assert outcome.counts["messages"] == 0
    assert outcome.counts["skipped_cooldown"] == 3
    # Another job has its own cooldown; this one reminds again after the interval.
    other = await run(context, tenant, job("REMINDER", job_id="job-2"), run_id="r3", now=later)
    assert other.counts["sent"] == 1
    much_later = now + timedelta(days=7, seconds=1)
    outcome = await run(context, tenant, job("REMINDER", items=2), run_id="r4", now=much_later)
    assert outcome.counts["sent"] == 1
    outcome = await run(
        context, tenant, job("REMINDER", reminder_interval_days=30), run_id="r5", now=much_later
    )
    assert outcome.counts["messages"] == 0

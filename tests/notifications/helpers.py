"""Building a read model through the events API and running notification jobs directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from event_collector.models.notifications import email_settings_table
from event_collector.notifications.content import Renderer
from event_collector.notifications.service import NotifyDeps, RunOutcome, RunRequest, execute_run
from tests.conftest import TenantFixture
from tests.read_model.helpers import post


def job(notification: str, items: int = -1, job_id: str = "job-1", **parameters: Any) -> dict:
    return {
        "id": job_id,
        "notification": notification,
        "number_of_items_in_email": items,
        "template_id": parameters.pop("template_id", None),
        "job_parameters": {"campaign_id": "spring", "utm_medium": "email", **parameters},
        "timezone": "UTC",
    }


def deps(context: Any, **overrides: Any) -> NotifyDeps:
    values: dict[str, Any] = {
        "db": context.db,
        "settings": context.settings,
        "secrets": context.secrets,
        "renderer": Renderer(context.settings.notify_templates_dir),
    }
    values.update(overrides)
    return NotifyDeps(**values)


async def run(
    context: Any,
    tenant: TenantFixture,
    job_row: dict,
    *,
    run_id: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    **dep_overrides: Any,
) -> RunOutcome:
    request = RunRequest(
        tenant=tenant.name,
        job=job_row,
        run_id=run_id,
        dry_run=dry_run,
        now=now or datetime.now(UTC) + timedelta(seconds=1),
    )
    return await execute_run(deps(context, **dep_overrides), request)


async def notifications(client: httpx.AsyncClient, tenant: TenantFixture, **query: Any) -> list:
    response = await client.get("/api/v1/notifications", params=query, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["notifications"])


class Shop:
    """Posts commerce entity events for one tenant."""

    def __init__(self, client: httpx.AsyncClient, tenant: TenantFixture) -> None:
        self.client = client
        self.tenant = tenant

    async def post(self, entity: str, payload: Any, operation: str = "UPDATE") -> None:
        await post(self.client, self.tenant, entity, operation, payload)

    async def customer(self, cid: str, *, consent: bool | None = True, **fields: Any) -> None:
        payload: dict[str, Any] = {"id": cid, "email": f"{cid}@example.com", "firstName": cid}
        if consent is not None:
            payload["optin_preferences"] = {"email": {"opt_in_active": consent}}
        payload.update(fields)
        await self.post("CUSTOMER", payload, "CREATE")

    async def wishlist(self, wid: str, customer: str) -> None:
        await self.post("WISHLIST", {"id": wid, "name": wid, "customerId": customer}, "CREATE")

    async def item(self, iid: str, wishlist: str, variant: str, **fields: Any) -> None:
        payload = {"id": iid, "wishlistId": wishlist, "product": {"selectedVariantId": variant}}
        await self.post("WISHLIST_ITEM", {**payload, **fields}, "CREATE")

    async def variant(self, vid: str, product: str | None = "p1", **fields: Any) -> None:
        payload: dict[str, Any] = {
            "id": vid,
            "title": f"Title {vid}",
            "link": f"https://shop.example/{vid}",
        }
        if product:
            payload["baseProductId"] = product
        payload.update(fields)
        await self.post("VARIANT_PRODUCT", payload)

    async def product(self, pid: str, **fields: Any) -> None:
        await self.post("PRODUCT", {"id": pid, "title": f"Product {pid}", **fields})

    async def price(
        self, variant: str, price: Any, sale: Any = None, currency: str = "AUD"
    ) -> None:
        payload = {"productVariantId": variant, "currencyCode": currency, "price": price}
        if sale is not None:
            payload["salePrice"] = sale
        await self.post("PRICE", payload)

    async def stock(self, variant: str, on_hand: int) -> None:
        await self.post(
            "INVENTORY_LEVEL",
            {"productVariantId": variant, "locationId": "l1", "stockOnHand": on_hand},
        )

    async def shopper(self, cid: str, variants: list[str], **customer: Any) -> None:
        """A customer with one wishlist holding one item per variant (item id = cid-variant)."""
        await self.customer(cid, **customer)
        await self.wishlist(f"w-{cid}", cid)
        for variant in variants:
            await self.item(f"{cid}-{variant}", f"w-{cid}", variant)


async def many_shoppers(shop: Shop, count: int, variant: str, prefix: str = "c") -> list[str]:
    """``count`` consenting customers, each with one wishlist holding ``variant`` (BULK events)."""
    ids = [f"{prefix}{n:05d}" for n in range(count)]
    for start in range(0, count, 500):
        chunk = ids[start : start + 500]
        customers = [
            {"id": c, "email": f"{c}@example.com", "accepts_marketing": True} for c in chunk
        ]
        await shop.post("CUSTOMER", customers, "BULK_CREATE")
        wishlists = [
            {
                "id": f"w-{c}",
                "customerId": c,
                "wishlistItems": [
                    {"id": f"{c}-{variant}", "product": {"selectedVariantId": variant}}
                ],
            }
            for c in chunk
        ]
        await shop.post("WISHLIST", wishlists, "BULK_CREATE")
    return ids


async def seal_with_a_removed_key(context: Any, tenant: str) -> None:
    """Make the tenant's stored SendGrid key look sealed by a key no longer in the key
    directory (as after an operator removed an old key too early)."""
    e = email_settings_table
    async with context.db.write() as conn:
        sealed = await conn.scalar(select(e.c.sendgrid_api_key_sealed).where(e.c.tenant == tenant))
        assert sealed
        version, _, data = sealed.split(".", 2)
        await conn.execute(
            update(e)
            .where(e.c.tenant == tenant)
            .values(sendgrid_api_key_sealed=f"{version}.removed.{data}")
        )

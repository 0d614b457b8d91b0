"""Tenant isolation as a property: whatever two tenants create, with whatever ids (drawn from a
small pool, so they often choose the same ones), nothing tenant A created reaches tenant B
through any endpoint: A's ids answer 404 by id (or B's own object, when B chose the same id),
are absent from B's lists, and no answer to B carries A's data.

Covered: events, subscriptions, deliveries, jobs and their runs, notifications, and the read
model's customers, wishlists and variants (and its problems list)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, make_tenant
from tests.factories import event_body
from tests.jobs.helpers import seed_shaped
from tests.notifications.helpers import Shop, job, run
from tests.subscriptions.helpers import URL as SUBSCRIPTIONS
from tests.subscriptions.helpers import subscription_body, webhook_destination

JOBS = "/api/v1/jobs"


def _pool(kind: str, min_size: int = 0) -> st.SearchStrategy[frozenset[str]]:
    ids = st.sampled_from([f"iso-{kind}-{n}" for n in range(3)])
    return st.frozensets(ids, min_size=min_size, max_size=2)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, dict[str, frozenset[str]]]:
    """What each tenant creates: ids per kind (A creates at least one of each)."""
    kinds = ("event", "sub", "job", "customer", "variant")
    return {
        "a": {kind: draw(_pool(kind, min_size=1)) for kind in kinds},
        "b": {kind: draw(_pool(kind)) for kind in kinds},
    }


@dataclass
class Created:
    """What one tenant created: ids it chose, and ids the server generated for it."""

    tenant: TenantFixture
    chosen: dict[str, frozenset[str]]
    # server-generated ids unique enough to search answers for: deliveries, runs (UUIDs)
    generated: set[str] = field(default_factory=set)
    notifications: set[Any] = field(default_factory=set)


def _ids(value: Any) -> Iterator[Any]:
    """Every id-like value in a JSON answer."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("id", "eventId", "run_id", "subscriptionId"):
                yield item
            yield from _ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _ids(item)


async def _create(
    context: Runtime, client: httpx.AsyncClient, tenant: TenantFixture, chosen: dict[str, Any]
) -> Created:
    created = Created(tenant, chosen)
    h = tenant.headers
    name = tenant.name  # in everything it creates, so that a leak shows
    for sub in chosen["sub"]:
        body = subscription_body(
            subscription_id=sub,
            destination=webhook_destination(url=f"https://hooks.example.com/{name}"),
        )
        assert (await client.post(SUBSCRIPTIONS, json=body, headers=h)).status_code == 201
    for event_id in chosen["event"]:
        body = event_body(event_id=event_id, entity_id=f"{name}-entity")
        assert (await client.post("/api/v1/events", json=body, headers=h)).status_code == 201
    shop = Shop(client, tenant)
    for variant in chosen["variant"]:
        await shop.product(f"{variant}-product", title=name)
        await shop.variant(variant, product=f"{variant}-product", title=name)
        await shop.price(variant, "10.00")
    variants = sorted(chosen["variant"])
    for customer in chosen["customer"]:
        await shop.shopper(customer, variants, firstName=name)
    # a problem for the read model (an event it cannot use)
    await shop.post("WISHLIST_ITEM", {"note": name}, "CREATE")
    for job_id in chosen["job"]:
        body = seed_shaped(id=job_id, job_parameters={"campaign_id": name, "utm_medium": "x"})
        assert (await client.post(JOBS, json=body, headers=h)).status_code == 201
        queued = await client.post(f"{JOBS}/{job_id}/run", headers=h)
        assert queued.status_code == 202, queued.text
        created.generated.add(queued.json()["run_id"])
    if chosen["customer"] and variants:
        await run(context, tenant, job("REMINDER", job_id=f"reminder-{name}"))
    for sub in chosen["sub"]:
        listed = await client.get(f"{SUBSCRIPTIONS}/{sub}/deliveries", headers=h)
        created.generated.update(d["id"] for d in listed.json()["items"])
        # inactive: the deliveries stay listed, and no other module's dispatcher sends them
        deactivated = await client.put(f"{SUBSCRIPTIONS}/{sub}/deactivate", headers=h)
        assert deactivated.status_code == 202, deactivated.text
    notified = await client.get("/api/v1/notifications", headers=h)
    created.notifications.update(n["id"] for n in notified.json()["notifications"])
    return created


class Probe:
    """B's requests; every answer is checked for A's data."""

    def __init__(self, client: httpx.AsyncClient, b: TenantFixture, a: Created) -> None:
        self.client, self.b, self.a = client, b, a
        self.requests = 0

    async def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, path, headers=self.b.headers, **kwargs)
        self.requests += 1
        assert response.status_code < 500, (method, path, response.text)
        assert self.a.tenant.name not in response.text, (method, path, response.text)
        # (an id B itself sent may be echoed: "no run <id>")
        leaked = [i for i in self.a.generated if i in response.text and i not in path]
        assert not leaked, (method, path, leaked)
        return response

    async def absent(self, method: str, path: str, **kwargs: Any) -> None:
        response = await self(method, path, **kwargs)
        assert response.status_code == 404, (method, path, response.status_code, response.text)

    async def listed(self, path: str, **params: Any) -> set[Any]:
        response = await self("GET", path, params=params)
        assert response.status_code == 200, (path, response.text)
        return set(_ids(response.json()))


async def _probe(probe: Probe, a: Created, b: Created) -> None:
    only_a = {kind: ids - b.chosen[kind] for kind, ids in a.chosen.items()}
    mine = b.chosen

    for event_id in a.chosen["event"]:
        if event_id in only_a["event"]:
            await probe.absent("GET", f"/api/v1/events/{event_id}")
        else:  # the same id, B's own event
            own = await probe("GET", f"/api/v1/events/{event_id}")
            assert own.json()["entity_id"] == f"{b.tenant.name}-entity"
    events = await probe.listed("/api/v1/events", limit=500)
    assert not events & only_a["event"]

    for sub in only_a["sub"]:
        base = f"{SUBSCRIPTIONS}/{sub}"
        update = {"destination": webhook_destination(url="https://hooks.example.com/b")}
        await probe.absent("GET", base)
        await probe.absent("PUT", base, json=update)
        await probe.absent("PUT", SUBSCRIPTIONS, json={"id": sub, **update})
        await probe.absent("PUT", f"{base}/deactivate")
        await probe.absent("PUT", f"{base}/activate")
        await probe.absent("POST", f"{base}/test")
        await probe.absent("GET", f"{base}/deliveries")
        await probe.absent("POST", f"{base}/replay", json={"since": "2000-01-01T00:00:00Z"})
    for sub in mine["sub"]:  # B's own, perhaps with an id A uses too: only B's deliveries
        await probe("GET", f"{SUBSCRIPTIONS}/{sub}/deliveries")
    subscriptions = await probe.listed(SUBSCRIPTIONS, includeInactive="true")
    assert not subscriptions & only_a["sub"]

    for job_id in only_a["job"]:
        base = f"{JOBS}/{job_id}"
        await probe.absent("GET", base)
        await probe.absent("PUT", base, json={"is_active": False})
        await probe.absent("POST", base, json={"is_active": False})
        await probe.absent("DELETE", base)
        await probe.absent("POST", f"{base}/run")
        await probe.absent("GET", f"{base}/runs")
    for job_id in a.chosen["job"]:
        for run_id in a.generated:
            await probe.absent("GET", f"{JOBS}/{job_id}/runs/{run_id}")
    jobs = await probe.listed(JOBS, include_deleted="true")
    assert not jobs & only_a["job"]

    for customer in only_a["customer"]:
        await probe.absent("GET", f"/api/v1/customers/{customer}")
        await probe.absent("GET", f"/api/v1/customers/{customer}/wishlists")
    for customer in a.chosen["customer"] & mine["customer"]:
        await probe("GET", f"/api/v1/customers/{customer}")
        await probe("GET", f"/api/v1/customers/{customer}/wishlists")
    for variant in only_a["variant"]:
        await probe.absent("GET", f"/api/v1/variants/{variant}")
    await probe.listed("/api/v1/read-model/problems")
    assert not await probe.listed("/api/v1/notifications") & a.notifications
    for customer in a.chosen["customer"]:
        listed = await probe.listed("/api/v1/notifications", customer_id=customer)
        assert not listed & a.notifications


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds())
async def test_nothing_one_tenant_creates_reaches_another(
    context: Runtime, client: httpx.AsyncClient, world: dict[str, dict[str, frozenset[str]]]
) -> None:
    tenant_a, tenant_b = await make_tenant(context, client), await make_tenant(context, client)
    b = await _create(context, client, tenant_b, world["b"])
    a = await _create(context, client, tenant_a, world["a"])
    # A really created what is probed for (so the property is not vacuous)
    assert a.generated, "A created no server-generated ids"  # its job runs at least
    assert a.notifications, "A's reminder job notified nobody"
    probe = Probe(client, tenant_b, a)
    await _probe(probe, a, b)
    # and B's view of itself still works (the probe is not just refusing everything)
    for sub in b.chosen["sub"]:
        response = await client.get(f"{SUBSCRIPTIONS}/{sub}", headers=tenant_b.headers)
        assert response.status_code == 200

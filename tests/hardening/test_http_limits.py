"""Bodies and limits through the app, on both databases (issue 12 items 3 and 5): the request
guard (token before body, 401 before 415), body limits, per-tenant rate limits and caps, and the
validation of their settings. Slow clients and memory against a real server:
test_http_server.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from event_collector.app import create_app
from event_collector.kit.errors import ConfigurationError, RateLimited
from event_collector.kit.ratelimit import RateLimiter
from event_collector.kit.settings import load_settings
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, make_settings, make_tenant
from tests.factories import event_body
from tests.jobs.helpers import seed_shaped
from tests.subscriptions.helpers import URL as SUBSCRIPTIONS
from tests.subscriptions.helpers import subscription_body

JOBS = "/api/v1/jobs"
EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"


# --- the request guard: token first, then media type, then size -----------------------------


@pytest.mark.parametrize("path", [SUBSCRIPTIONS, JOBS, EVENTS, BATCH])
async def test_a_token_less_post_is_401_before_any_media_type_check(
    client: httpx.AsyncClient, tenant: TenantFixture, path: str
) -> None:
    tenant_only = {"X-TWC-Tenant": tenant.name}
    for headers in ({}, {"Content-Type": "text/plain"}):
        response = await client.post(path, content=b"a=b", headers={**tenant_only, **headers})
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "Unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
        # The body was never read: the server does not read on either.
        assert response.headers["connection"] == "close"
    bad_token = {**tenant_only, "Authorization": "Bearer not-a-token"}
    response = await client.post(path, content=b"a=b", headers=bad_token)
    assert response.status_code == 401
    response = await client.post(path, content=b"a=b", headers=tenant.headers)
    assert response.status_code == 415
    assert response.json()["error"] == "UnsupportedMediaType"


async def test_a_token_for_another_tenant_is_refused_before_the_body(
    client: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    headers = {**tenant.headers, "X-TWC-Tenant": other_tenant.name}
    response = await client.post(SUBSCRIPTIONS, content=b"x", headers=headers)
    assert response.status_code == 403
    response = await client.post(
        SUBSCRIPTIONS, content=b"x", headers={"Authorization": tenant.headers["Authorization"]}
    )
    assert response.status_code == 400
    assert "X-TWC-Tenant" in response.json()["detail"]


async def _chunks(total: int, size: int = 64 << 10) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBSCRIPTIONS),
        ("PUT", f"{SUBSCRIPTIONS}/x"),
        ("POST", JOBS),
        ("PUT", "/api/v1/email-settings"),
    ],
)
async def test_every_api_route_refuses_an_over_limit_body(
    client: httpx.AsyncClient, tenant: TenantFixture, settings: Any, method: str, path: str
) -> None:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    over = settings.max_body_bytes + 1
    declared = await client.request(method, path, content=b" " * over, headers=headers)
    assert declared.status_code == 413, declared.text
    assert str(settings.max_body_bytes) in declared.json()["detail"]
    chunked = await client.request(method, path, content=_chunks(over), headers=headers)
    assert chunked.status_code == 413, chunked.text
    assert chunked.headers["connection"] == "close"


async def test_the_token_endpoint_refuses_an_over_limit_form(
    client: httpx.AsyncClient, settings: Any
) -> None:
    response = await client.post(
        "/oauth/token",
        content=b"a" * (settings.max_body_bytes + 1),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


async def test_a_chunked_body_within_the_limit_still_reaches_the_route(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    raw = json.dumps(subscription_body()).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 7):
            yield raw[start : start + 7]

    response = await client.post(
        SUBSCRIPTIONS,
        content=pieces(),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


# --- per-tenant rate limits -------------------------------------------------------------------


def test_the_token_bucket_admits_a_burst_then_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, what="on the API", clock=lambda: now[0])
    for _ in range(3):
        limiter.admit("acme")
    with pytest.raises(RateLimited) as refused:
        limiter.admit("acme")
    assert refused.value.headers == {"Retry-After": "1"}
    assert "acme" in refused.value.detail
    assert "retry after 1 s" in refused.value.detail
    limiter.admit("other")  # every tenant has its own bucket
    now[0] += 0.5  # one token back at 2 per second
    limiter.admit("acme")
    with pytest.raises(RateLimited):
        limiter.admit("acme")
    now[0] += 3600  # an idle tenant gets its burst back, no more
    for _ in range(3):
        limiter.admit("acme")
    with pytest.raises(RateLimited):
        limiter.admit("acme")


async def _app_with(database_url: str, key_dir: Path, **overrides: Any) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(database_url, key_dir, **overrides))
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture(scope="module")
async def rate_limited_app(database_url: str, key_dir: Path) -> AsyncIterator[FastAPI]:
    async for app in _app_with(
        database_url,
        key_dir,
        rate_limit_api_per_second=4.0,
        rate_limit_api_burst=3,
        rate_limit_ingest_per_second=4.0,
        rate_limit_ingest_burst=2,
    ):
        yield app


@asynccontextmanager
async def _client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest_asyncio.fixture
async def limited_client(rate_limited_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client_of(rate_limited_app) as http:
        yield http


async def _until_admitted(send: Any, within: float = 10.0) -> httpx.Response:
    """Poll ``send()`` until it is no longer 429 (the bucket refills)."""
    deadline = time.monotonic() + within
    while True:
        response: httpx.Response = await send()
        if response.status_code != 429:
            return response
        assert time.monotonic() < deadline, "the rate limit never admitted the tenant again"
        await asyncio.sleep(0.05)


async def test_the_api_rate_limit_answers_429_with_retry_after_then_recovers(
    rate_limited_app: FastAPI, limited_client: httpx.AsyncClient
) -> None:
    runtime: Runtime = rate_limited_app.state.runtime
    tenant = await make_tenant(runtime, limited_client)
    other = await make_tenant(runtime, limited_client)

    async def listing(who: TenantFixture = tenant) -> httpx.Response:
        return await limited_client.get(SUBSCRIPTIONS, headers=who.headers)

    statuses = [(await listing()).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    refused = await listing()
    assert refused.status_code == 429
    assert refused.json()["error"] == "RateLimited"
    assert tenant.name in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    # A write is refused before its body is read, like any request over the rate.
    write = await limited_client.post(
        SUBSCRIPTIONS, json=subscription_body(), headers=tenant.headers
    )
    assert write.status_code == 429
    assert (await listing(other)).status_code == 200  # other tenants are not held back
    assert (await _until_admitted(listing)).status_code == 200


async def test_the_ingest_rate_limit_is_its_own(
    rate_limited_app: FastAPI, limited_client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(rate_limited_app.state.runtime, limited_client)

    async def ingest() -> httpx.Response:
        return await limited_client.post(EVENTS, json=event_body(), headers=tenant.headers)

    assert [(await ingest()).status_code for _ in range(2)] == [201, 201]
    refused = await ingest()
    assert refused.status_code == 429
    assert "ingest" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "1"
    # The API's bucket is untouched by ingest.
    listed = await limited_client.get(SUBSCRIPTIONS, headers=tenant.headers)
    assert listed.status_code == 200
    assert (await _until_admitted(ingest)).status_code == 201


# --- per-tenant caps ----------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def capped_app(database_url: str, key_dir: Path) -> AsyncIterator[FastAPI]:
    async for app in _app_with(
        database_url, key_dir, max_subscriptions_per_tenant=2, max_jobs_per_tenant=2
    ):
        yield app


@pytest_asyncio.fixture
async def capped_client(capped_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client_of(capped_app) as http:
        yield http


async def test_subscriptions_over_the_cap_are_400(
    capped_app: FastAPI, capped_client: httpx.AsyncClient
) -> None:
    runtime: Runtime = capped_app.state.runtime
    tenant = await make_tenant(runtime, capped_client)
    other = await make_tenant(runtime, capped_client)
    for active in (True, False):  # inactive subscriptions count too
        created = await capped_client.post(
            SUBSCRIPTIONS, json=subscription_body(active=active), headers=tenant.headers
        )
        assert created.status_code == 201, created.text
    over = await capped_client.post(SUBSCRIPTIONS, json=subscription_body(), headers=tenant.headers)
    assert over.status_code == 400
    assert "EC_MAX_SUBSCRIPTIONS_PER_TENANT" in over.json()["detail"]
    listed = await capped_client.get(
        SUBSCRIPTIONS, params={"include_inactive": "true"}, headers=tenant.headers
    )
    assert len(listed.json()) == 2  # the refused one changed nothing
    elsewhere = await capped_client.post(
        SUBSCRIPTIONS, json=subscription_body(), headers=other.headers
    )
    assert elsewhere.status_code == 201


async def test_jobs_over_the_cap_are_400_and_deleting_one_makes_room(
    capped_app: FastAPI, capped_client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(capped_app.state.runtime, capped_client)
    first, second, third = (seed_shaped() for _ in range(3))
    for body in (first, second):
        assert (
            await capped_client.post(JOBS, json=body, headers=tenant.headers)
        ).status_code == 201
    over = await capped_client.post(JOBS, json=third, headers=tenant.headers)
    assert over.status_code == 400
    assert "EC_MAX_JOBS_PER_TENANT" in over.json()["detail"]
    assert (
        await capped_client.get(f"{JOBS}/{third['id']}", headers=tenant.headers)
    ).status_code == 404
    deleted = await capped_client.delete(f"{JOBS}/{first['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (await capped_client.post(JOBS, json=third, headers=tenant.headers)).status_code == 201
    # Undeleting the first would make three.
    undelete = await capped_client.put(
        f"{JOBS}/{first['id']}", json={"deleted": False}, headers=tenant.headers
    )
    assert undelete.status_code == 400
    assert "EC_MAX_JOBS_PER_TENANT" in undelete.json()["detail"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("http_header_timeout_seconds", 0),
        ("http_body_timeout_seconds", -1),
        ("http_keepalive_timeout_seconds", 0),
        ("http_max_connections", 0),
        ("rate_limit_api_per_second", -1),
        ("rate_limit_ingest_burst", 0),
        ("max_subscriptions_per_tenant", 0),
        ("max_jobs_per_tenant", 0),
    ],
)
def test_limit_settings_are_validated_at_start_up(variable: str, value: float) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(**{variable: value})
    assert refused.value.detail.startswith(f"invalid configuration: EC_{variable.upper()}: ")

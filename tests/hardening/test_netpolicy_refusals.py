"""The SSRF policy (kit/netpolicy.py): IPv6 addresses carrying a private IPv4 (6to4, NAT64,
Teredo) are refused like the IPv4 they carry, and a refusal at send time, shown to the tenant
by the test endpoint and ``lastError``, never says what an internal name resolves to."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from event_collector.app import create_app
from event_collector.kit.netpolicy import NOT_PUBLIC, address_refusal, is_public, url_refusal
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, make_settings
from tests.delivery.conftest import DELIVERY_OVERRIDES
from tests.delivery.helpers import post_events, route, wait_status
from tests.subscriptions.helpers import URL, subscription_body, webhook_destination

CARRYING_PRIVATE = [
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254 (cloud metadata)
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::c0a8:1",  # NAT64 of 192.168.0.1
    "64:ff9b:1::a00:1",  # local-use NAT64 prefix
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
]


@pytest.mark.parametrize("address", CARRYING_PRIVATE)
def test_ipv6_carrying_a_private_ipv4_is_not_public(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert not is_public(parsed)
    assert address_refusal("hooks.example.com", parsed, []) == NOT_PUBLIC
    assert url_refusal(f"https://[{address}]/hook", []) is not None
    # the operator can still allow it, by network
    assert address_refusal("hooks.example.com", parsed, [f"{address}/128"]) is None


@pytest.mark.parametrize("address", ["2002:808:808::1", "64:ff9b::808:808", "2606:4700::1111"])
def test_ipv6_carrying_a_public_ipv4_stays_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", CARRYING_PRIVATE[:4] + CARRYING_PRIVATE[7:8])
async def test_the_api_refuses_such_webhook_urls(
    client: httpx.AsyncClient, tenant: TenantFixture, address: str
) -> None:
    body = subscription_body(destination=webhook_destination(url=f"https://[{address}]/hook"))
    response = await client.post(URL, json=body, headers=tenant.headers)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["loc"] == ["destination", "webhook", "url"]


# A DNS answer is the true edge here: names under .internal.test resolve to what the test says.
INTERNAL = {
    "intranet.internal.test": "10.0.0.7",
    "metadata.internal.test": "2002:a9fe:a9fe::1",
    "nat64.internal.test": "64:ff9b::a00:7",
}


@pytest.fixture
def internal_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        address = INTERNAL.get(str(host))
        if address is None:
            return real(host, port, *args, **kwargs)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, int(port or 0)) + ((0, 0) if family == socket.AF_INET6 else ())
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest_asyncio.fixture(scope="module")
async def app(database_url: str, key_dir: Path) -> AsyncIterator[FastAPI]:
    """An app whose dispatcher sends (for ``lastError``)."""
    application = create_app(make_settings(database_url, key_dir, **DELIVERY_OVERRIDES))
    async with application.router.lifespan_context(application):
        yield application


@pytest.mark.usefixtures("internal_dns")
async def test_send_time_refusals_do_not_reveal_the_address(
    context: Runtime, client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    subs = {}
    for host in INTERNAL:
        # a name is not resolved when written (it may not resolve yet): stored
        body = subscription_body(destination=webhook_destination(url=f"http://{host}/hook"))
        response = await client.post(URL, json=body, headers=tenant.headers)
        assert response.status_code == 201, response.text
        subs[host] = body["id"]
    events = await post_events(client, tenant, 1)
    made = await route(context, tenant.name, list(subs.values()), [events[0]["id"]])
    await wait_status(context, list(made.values()), "failed")

    for host, sub in subs.items():
        tested = await client.post(f"{URL}/{sub}/test", headers=tenant.headers)
        listed = await client.get(f"{URL}/{sub}/deliveries", headers=tenant.headers)
        assert tested.json()["error"] == NOT_PUBLIC
        (delivery,) = listed.json()["items"]
        assert delivery["lastError"].startswith(NOT_PUBLIC)
        for text in (tested.text, listed.text):
            assert INTERNAL[host] not in text
            assert str(ipaddress.ip_address(INTERNAL[host])) not in text
            assert "10.0.0.7" not in text
            assert "169.254" not in text

"""Webhook subscriptions: their signing secret, custom headers and address rules, through real HTTP
(SQLite and PostgreSQL)."""

from __future__ import annotations

import logging

import pytest
from standardwebhooks.webhooks import Webhook

from event_collector.runtime import Runtime
from event_collector.subscriptions.service import open_headers
from tests.conftest import TenantFixture
from tests.subscriptions.helpers import (
    ACCESS_SECRET,
    MASK,
    URL,
    WEBHOOK_SECRET,
    assert_bad_request,
    create,
    sqs_destination,
    stored_row,
    stored_secret,
    subscription_body,
    webhook_destination,
)

# --- webhooks, secrets -----------------------------------------------------------------------


async def test_webhook_secret_is_generated_and_shown_once(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    body = subscription_body(destination=webhook_destination(headers={"X-Team": "crm"}))
    created = await create(client, tenant, body)
    secret = created["destination"]["webhook"]["secret"]
    assert secret.startswith("whsec_")
    Webhook(secret)  # a valid Standard Webhooks secret
    assert await stored_secret(context, tenant.name, body["id"]) == secret
    assert created["destination"]["webhook"]["headers"] == {"X-Team": "crm"}

    fetched = (await client.get(f"{URL}/{body['id']}", headers=tenant.headers)).json()
    assert fetched["destination"]["webhook"]["secret"] == MASK + secret[-4:]
    listed = (await client.get(URL, headers=tenant.headers)).json()
    assert secret not in str(listed)


async def test_a_given_webhook_secret_is_masked(client, tenant: TenantFixture) -> None:
    body = subscription_body(destination=webhook_destination(secret=WEBHOOK_SECRET))
    created = await create(client, tenant, body)
    assert created["destination"]["webhook"]["secret"] == MASK + WEBHOOK_SECRET[-4:]


async def test_sensitive_webhook_headers_are_masked_and_round_trip(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    body = subscription_body(
        destination=webhook_destination(
            secret=WEBHOOK_SECRET,
            headers={"Authorization": "Bearer sk_live_0123456789abcdef", "X-Team": "crm"},
        )
    )
    created = await create(client, tenant, body)
    headers = created["destination"]["webhook"]["headers"]
    assert headers == {"Authorization": MASK + "cdef", "X-Team": "crm"}
    updated = await client.put(f"{URL}/{body['id']}", json=created, headers=tenant.headers)
    assert updated.status_code == 200, updated.text
    row = await stored_row(context, tenant.name, body["id"])
    # stored sealed (names and values), and the masked value sent back kept the real one
    assert "headers" not in row["destination"]
    assert "sk_live" not in str(row)
    assert "X-Team" not in str(row)
    assert open_headers(context.secrets, tenant.name, body["id"], row["headers_sealed"]) == {
        "Authorization": "Bearer sk_live_0123456789abcdef",
        "X-Team": "crm",
    }
    # a masked header value with nothing stored to keep is refused
    created["destination"]["webhook"]["headers"]["X-Api-Key"] = MASK + "zzzz"
    refused = await client.put(f"{URL}/{body['id']}", json=created, headers=tenant.headers)
    assert_bad_request(refused, "no stored value")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.1/hook",
        "http://2130706433/hook",
        "http://localhost/hook",
        "http://api.localhost/hook",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hook",
        "http://[fe80::1]/hook",
    ],
)
async def test_webhook_to_internal_addresses_is_refused(
    client, tenant: TenantFixture, url: str
) -> None:
    body = subscription_body(destination=webhook_destination(url=url))
    response = await client.post(URL, json=body, headers=tenant.headers)
    assert_bad_request(response, "EC_WEBHOOK_ALLOWED_HOSTS")
    assert response.json()["errors"][0]["loc"] == ["destination", "webhook", "url"]


async def test_webhook_allow_list(
    client, tenant: TenantFixture, context: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = context.settings.model_copy(
        update={"webhook_allowed_hosts": ["127.0.0.0/8", "localhost", "fd00::/8"]}
    )
    monkeypatch.setattr(context, "settings", settings)
    for url in ("http://127.0.0.1:9000/h", "http://localhost:9000/h", "http://[fd00::5]/h"):
        await create(client, tenant, subscription_body(destination=webhook_destination(url=url)))
    refused = await client.post(
        URL,
        json=subscription_body(destination=webhook_destination(url="http://10.0.0.1/h")),
        headers=tenant.headers,
    )
    assert_bad_request(refused, "EC_WEBHOOK_ALLOWED_HOSTS")


async def test_raw_row_and_logs_hold_no_plaintext_secret(
    client, tenant: TenantFixture, context: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sqs = subscription_body(destination=sqs_destination())
    webhook = subscription_body(destination=webhook_destination(secret=WEBHOOK_SECRET))
    generated = subscription_body(destination=webhook_destination())
    await create(client, tenant, sqs)
    await create(client, tenant, webhook)
    generated_secret = (await create(client, tenant, generated))["destination"]["webhook"]["secret"]
    new_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    changed = subscription_body(
        subscription_id=None, destination=webhook_destination(secret=new_secret)
    )
    assert (
        await client.put(f"{URL}/{webhook['id']}", json=changed, headers=tenant.headers)
    ).status_code == 200
    # a failing request must not echo the secret either
    bad = subscription_body(destination=sqs_destination(accessKey=..., accessSecret="s3cr3t-xyz!"))
    response = await client.post(URL, json=bad, headers=tenant.headers)
    assert response.status_code == 400
    assert "s3cr3t-xyz!" not in response.text

    secrets = [ACCESS_SECRET, WEBHOOK_SECRET, generated_secret, new_secret, "s3cr3t-xyz!"]
    for subscription_id in (sqs["id"], webhook["id"], generated["id"]):
        row = await stored_row(context, tenant.name, subscription_id)
        assert row["secret_sealed"].startswith("v1.")
        for secret in secrets:
            assert secret not in repr(row)
            assert secret.removeprefix("whsec_") not in repr(row)
    assert await stored_secret(context, tenant.name, webhook["id"]) == new_secret

    # The absence below proves something only if the service's logs were captured.
    service_logs = [r for r in caplog.records if r.name == "event_collector.subscriptions.service"]
    assert len(service_logs) >= 4, "the creates and the update logged nothing"
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for record in caplog.records
    )
    for secret in secrets:
        assert secret not in logged


async def test_a_secret_is_bound_to_its_subscription(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    body = subscription_body()
    await create(client, tenant, body)
    row = await stored_row(context, tenant.name, body["id"])
    with pytest.raises(Exception, match="tampered"):
        context.secrets.open(row["secret_sealed"], associated_data=f"other:{body['id']}")

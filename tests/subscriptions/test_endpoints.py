"""The subscriptions API through real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import update

from event_collector.kit.db import utcnow
from event_collector.models import subscription_table
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, make_tenant
from tests.subscriptions.helpers import (
    ACCESS_KEY,
    ACCESS_SECRET,
    MASK,
    QUEUE_URL,
    TOPIC_ARN,
    URL,
    WEBHOOK_SECRET,
    assert_bad_request,
    create,
    new_id,
    sns_destination,
    sqs_destination,
    stored_row,
    stored_secret,
    subscription_body,
    webhook_destination,
)

# --- create --------------------------------------------------------------------------------


async def test_create_sqs_subscription(client, tenant: TenantFixture) -> None:
    body = subscription_body(entity_type="order", destination=sqs_destination())
    created = await create(client, tenant, body)
    assert created["id"] == body["id"]
    assert created["active"] is True
    assert created["entityType"] == "ORDER"
    assert (created["subscribeCreate"], created["subscribeChange"], created["subscribeDelete"]) == (
        True,
        True,
        True,
    )
    assert created["destination"] == {
        "type": "SQS",
        "sqs": {
            "queueUrl": QUEUE_URL,
            "region": "eu-west-1",
            "accessKey": ACCESS_KEY,
            "accessSecret": MASK + ACCESS_SECRET[-4:],
        },
    }
    assert created["createdAt"].endswith("Z")
    assert created["updatedAt"] == created["createdAt"]
    assert created["deactivatedAt"] is None
    assert created["deactivatedReason"] is None
    fetched = await client.get(f"{URL}/{body['id']}", headers=tenant.headers)
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_create_generates_an_id_and_refuses_an_existing_one(
    client, tenant: TenantFixture
) -> None:
    created = await create(client, tenant, subscription_body(subscription_id=None))
    assert len(created["id"]) == 36
    again = await client.post(
        URL, json=subscription_body(subscription_id=created["id"]), headers=tenant.headers
    )
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "Conflict"


async def test_flags_and_inactive_create(client, tenant: TenantFixture) -> None:
    created = await create(
        client,
        tenant,
        subscription_body(active=False, subscribeCreate=False, subscribeDelete=False),
    )
    assert created["active"] is False
    assert created["deactivatedAt"] is not None
    assert (created["subscribeCreate"], created["subscribeChange"], created["subscribeDelete"]) == (
        False,
        True,
        False,
    )


async def test_create_sns_subscription_with_region_from_arn(client, tenant: TenantFixture) -> None:
    created = await create(client, tenant, subscription_body(destination=sns_destination()))
    assert created["destination"] == {
        "type": "SNS",
        "sns": {
            "topicArn": TOPIC_ARN,
            "region": "us-east-2",
            "accessKey": ACCESS_KEY,
            "accessSecret": MASK + ACCESS_SECRET[-4:],
        },
    }


async def test_legacy_sns_form_is_stored_as_sns(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    # The seed's own example: type SNS with an sqs block holding the topic ARN.
    body = subscription_body(
        destination={
            "type": "sns",
            "sqs": {
                "queueUrl": TOPIC_ARN,
                "region": "us-east-2",
                "accessKey": ACCESS_KEY,
                "accessSecret": ACCESS_SECRET,
            },
        }
    )
    created = await create(client, tenant, body)
    assert created["destination"]["type"] == "SNS"
    assert created["destination"]["sns"]["topicArn"] == TOPIC_ARN
    assert "sqs" not in created["destination"]
    row = await stored_row(context, tenant.name, body["id"])
    assert row["destination_type"] == "SNS"
    assert row["destination"] == {
        "topicArn": TOPIC_ARN,
        "region": "us-east-2",
        "accessKey": ACCESS_KEY,
    }
    assert await stored_secret(context, tenant.name, body["id"]) == ACCESS_SECRET


async def test_legacy_sns_form_with_a_queue_url_is_refused(client, tenant: TenantFixture) -> None:
    body = subscription_body(destination={"type": "SNS", "sqs": {"queueUrl": QUEUE_URL}})
    response = await client.post(URL, json=body, headers=tenant.headers)
    assert_bad_request(response, "SNS topic ARN", '"type": "SQS"')
    assert response.json()["errors"][0]["loc"] == ["destination", "sqs", "queueUrl"]


async def test_aws_destination_without_keys_uses_server_credentials(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    body = subscription_body(
        destination=sqs_destination(
            queueUrl="http://127.0.0.1:4566/000000000000/local-queue.fifo",
            region="us-east-1",
            accessKey=...,
            accessSecret=...,
        )
    )
    created = await create(client, tenant, body)
    assert created["destination"]["sqs"] == {
        "queueUrl": "http://127.0.0.1:4566/000000000000/local-queue.fifo",
        "region": "us-east-1",
        "accessKey": None,
        "accessSecret": None,
    }
    row = await stored_row(context, tenant.name, body["id"])
    assert row["secret_sealed"] is None


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({"entityType": "BANANA"}, ["entityType"], "must be one of"),
        ({"entityType": None}, ["entityType"], ""),
        ({"destination": None}, ["destination"], ""),
        ({"destination": {"type": "FTP"}}, ["destination", "type"], "SQS, SNS, WEBHOOK"),
        ({"destination": {"type": "SQS"}}, ["destination", "sqs"], "required for type SQS"),
        (
            {"destination": {"type": "SQS", "sqs": {"queueUrl": QUEUE_URL, "colour": "red"}}},
            ["destination", "sqs", "colour"],
            "",
        ),
        (
            {"destination": sqs_destination(queueUrl="sqs://eu-west-1/123/orders")},
            ["destination", "sqs", "queueUrl"],
            "must be an SQS queue URL",
        ),
        (
            {"destination": sqs_destination(queueUrl="https://sqs.eu-west-1.amazonaws.com/q")},
            ["destination", "sqs", "queueUrl"],
            "must be an SQS queue URL",
        ),
        (
            {"destination": sqs_destination(queueUrl="https://sqs.eu-west-1.amazonaws.com/12/q")},
            ["destination", "sqs", "queueUrl"],
            "12 digits",
        ),
        (
            {"destination": sqs_destination(queueUrl=TOPIC_ARN)},
            ["destination", "sqs", "queueUrl"],
            "needs type SNS",
        ),
        (
            {"destination": sqs_destination(queueUrl="http://localhost:9324/000000000000/q")},
            ["destination", "sqs", "region"],
            "is required",
        ),
        (
            {"destination": sqs_destination(region="us-east-1")},
            ["destination", "sqs", "region"],
            "does not match",
        ),
        (
            {"destination": sqs_destination(region="Europe")},
            ["destination", "sqs", "region"],
            "AWS region",
        ),
        (
            {"destination": sqs_destination(accessSecret=...)},
            ["destination", "sqs", "accessSecret"],
            "is required with accessKey",
        ),
        (
            {"destination": sqs_destination(accessKey=...)},
            ["destination", "sqs", "accessKey"],
            "go together",
        ),
        (
            {"destination": sqs_destination(accessSecret=MASK + "abcd")},
            ["destination", "sqs", "accessSecret"],
            "masked",
        ),
        (
            {"destination": sns_destination(topicArn="arn:aws:sqs:us-east-1:123456789012:q")},
            ["destination", "sns", "topicArn"],
            "SNS topic ARN",
        ),
        (
            {"destination": {"type": "SNS", "sns": {"topicArn": TOPIC_ARN}, "sqs": {}}},
            ["destination"],
            "remove sqs",
        ),
        (
            {"destination": {"type": "SQS", "sns": {"topicArn": TOPIC_ARN}}},
            ["destination", "sqs"],
            "required for type SQS",
        ),
        (
            {"destination": webhook_destination(url="ftp://example.com/x")},
            ["destination", "webhook", "url"],
            "http(s) URL",
        ),
        (
            {"destination": webhook_destination(url="https://user:pw@example.com/x")},
            ["destination", "webhook", "url"],
            "without credentials",
        ),
        (
            {"destination": webhook_destination(secret="not-a-whsec")},
            ["destination", "webhook", "secret"],
            "Standard Webhooks secret",
        ),
        (
            {"destination": webhook_destination(secret="whsec_c2hvcnQ=")},
            ["destination", "webhook", "secret"],
            "16 to 64 bytes",
        ),
        (
            {"destination": webhook_destination(headers={"Host": "evil.example"})},
            ["destination", "webhook", "headers", "Host"],
            "set by the dispatcher",
        ),
        (
            {"destination": webhook_destination(headers={"webhook-signature": "v1,x"})},
            ["destination", "webhook", "headers", "webhook-signature"],
            "set by the dispatcher",
        ),
        (
            {"destination": webhook_destination(headers={"Content-Length": "1"})},
            ["destination", "webhook", "headers", "Content-Length"],
            "set by the dispatcher",
        ),
        (
            {"destination": webhook_destination(headers={"Bad Name": "x"})},
            ["destination", "webhook", "headers", "Bad Name"],
            "header name",
        ),
        (
            {"destination": webhook_destination(headers={"X-A": "line\r\nInjected: 1"})},
            ["destination", "webhook", "headers", "X-A"],
            "control characters",
        ),
        ({"id": "a/b"}, ["id"], ""),
        ({"active": "maybe"}, ["active"], ""),
    ],
)
async def test_validation_errors(
    client, tenant: TenantFixture, body: dict[str, Any], loc: list[str], fragment: str
) -> None:
    request = subscription_body()
    request.update(body)
    response = await client.post(URL, json=request, headers=tenant.headers)
    assert_bad_request(response, fragment)
    errors = response.json()["errors"]
    assert loc in [error["loc"] for error in errors], errors
    listed = await client.get(f"{URL}?include_inactive=true", headers=tenant.headers)
    assert listed.json() == []


async def test_malformed_and_non_json_bodies(client, tenant: TenantFixture) -> None:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    response = await client.post(URL, content=b"{not json", headers=headers)
    assert_bad_request(response, "not valid JSON")
    response = await client.post(
        URL, content=b"x", headers={**tenant.headers, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415


# --- update ----------------------------------------------------------------------------------


async def test_put_by_path_and_by_body(client, tenant: TenantFixture) -> None:
    body = subscription_body()
    await create(client, tenant, body)
    by_path = await client.put(
        f"{URL}/{body['id']}",
        json={"entityType": "product", "subscribeChange": False},
        headers=tenant.headers,
    )
    assert by_path.status_code == 200, by_path.text
    data = by_path.json()
    assert (data["entityType"], data["subscribeChange"], data["subscribeCreate"]) == (
        "PRODUCT",
        False,
        True,
    )
    assert data["updatedAt"] > data["createdAt"]
    by_body = await client.put(
        URL, json={"id": body["id"], "subscribeDelete": False}, headers=tenant.headers
    )
    assert by_body.status_code == 200, by_body.text
    assert by_body.json()["subscribeDelete"] is False
    assert by_body.json()["subscribeChange"] is False


async def test_put_errors(client, tenant: TenantFixture) -> None:
    body = subscription_body()
    await create(client, tenant, body)
    missing = await client.put(
        f"{URL}/{new_id()}", json=body | {"id": None}, headers=tenant.headers
    )
    assert missing.status_code == 404, missing.text
    missing = await client.put(URL, json=subscription_body(), headers=tenant.headers)
    assert missing.status_code == 404, missing.text
    other_id = await client.put(
        f"{URL}/{body['id']}", json={"id": new_id()}, headers=tenant.headers
    )
    assert_bad_request(other_id, "differs from the path")
    no_id = await client.put(URL, json={"active": True}, headers=tenant.headers)
    assert_bad_request(no_id, "id")
    invalid = await client.put(
        f"{URL}/{body['id']}",
        json={"destination": {"type": "SNS", "sqs": {"queueUrl": QUEUE_URL}}},
        headers=tenant.headers,
    )
    assert_bad_request(invalid, "SNS topic ARN")


async def test_get_body_round_trips_into_put_and_keeps_the_secret(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    for destination, secret in (
        (sqs_destination(), ACCESS_SECRET),
        (sns_destination(), ACCESS_SECRET),
        (webhook_destination(secret=WEBHOOK_SECRET), WEBHOOK_SECRET),
    ):
        body = subscription_body(destination=destination)
        await create(client, tenant, body)
        fetched = (await client.get(f"{URL}/{body['id']}", headers=tenant.headers)).json()
        for url in (f"{URL}/{body['id']}", URL):
            updated = await client.put(url, json=fetched, headers=tenant.headers)
            assert updated.status_code == 200, updated.text
            assert updated.json()["destination"] == fetched["destination"]
            assert await stored_secret(context, tenant.name, body["id"]) == secret
        # omitting the secret keeps it as well
        block = fetched["destination"]["type"].lower()
        field = "secret" if block == "webhook" else "accessSecret"
        del fetched["destination"][block][field]
        updated = await client.put(f"{URL}/{body['id']}", json=fetched, headers=tenant.headers)
        assert updated.status_code == 200, updated.text
        assert await stored_secret(context, tenant.name, body["id"]) == secret


async def test_put_replaces_the_secret_and_checks_key_changes(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    body = subscription_body()
    await create(client, tenant, body)
    path = f"{URL}/{body['id']}"
    replaced = await client.put(
        path,
        json={"destination": sqs_destination(accessSecret="another-secret-value-1234")},
        headers=tenant.headers,
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["destination"]["sqs"]["accessSecret"] == MASK + "1234"
    assert await stored_secret(context, tenant.name, body["id"]) == "another-secret-value-1234"
    # a new access key with the masked old secret cannot work: refused
    new_key = await client.put(
        path,
        json={"destination": sqs_destination(accessKey="AKIANEWKEY", accessSecret=MASK + "1234")},
        headers=tenant.headers,
    )
    assert_bad_request(new_key, "no stored secret for this accessKey")
    # dropping both keys asks for the server's credentials: refused for a queue the operator
    # did not allow (the secret stays) ...
    refused = await client.put(
        path,
        json={"destination": sqs_destination(accessKey=None, accessSecret=None)},
        headers=tenant.headers,
    )
    assert_bad_request(refused, "EC_AWS_SERVER_CREDENTIALS_ALLOW")
    assert await stored_secret(context, tenant.name, body["id"]) == "another-secret-value-1234"
    # ... and switches to them, forgetting the secret, for an allowed one (tests/conftest.py)
    allowed_queue = "https://sqs.eu-west-1.amazonaws.com/000000000000/orders"
    dropped = await client.put(
        path,
        json={
            "destination": sqs_destination(
                queueUrl=allowed_queue, accessKey=None, accessSecret=None
            )
        },
        headers=tenant.headers,
    )
    assert dropped.status_code == 200, dropped.text
    assert await stored_secret(context, tenant.name, body["id"]) is None


async def test_switching_to_a_webhook_generates_a_secret(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    body = subscription_body()
    await create(client, tenant, body)
    switched = await client.put(
        f"{URL}/{body['id']}",
        json={"destination": webhook_destination()},
        headers=tenant.headers,
    )
    assert switched.status_code == 200, switched.text
    secret = switched.json()["destination"]["webhook"]["secret"]
    assert secret.startswith("whsec_")  # the AWS secret is never reused as a signing secret
    assert await stored_secret(context, tenant.name, body["id"]) == secret


# --- list, get, activate, deactivate --------------------------------------------------------


async def test_list_active_and_all(client, tenant: TenantFixture) -> None:
    active = await create(client, tenant, subscription_body())
    inactive = await create(client, tenant, subscription_body(active=False))
    listed = await client.get(URL, headers=tenant.headers)
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()] == [active["id"]]
    everything = await client.get(URL, params={"include_inactive": "true"}, headers=tenant.headers)
    assert {s["id"] for s in everything.json()} == {active["id"], inactive["id"]}
    # an inactive one is still readable by id
    fetched = await client.get(f"{URL}/{inactive['id']}", headers=tenant.headers)
    assert fetched.status_code == 200
    assert fetched.json()["active"] is False
    assert (await client.get(f"{URL}/{new_id()}", headers=tenant.headers)).status_code == 404


async def test_deactivate_is_idempotent_and_activate_resumes(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    created = await create(client, tenant, subscription_body())
    path = f"{URL}/{created['id']}"
    first = await client.put(f"{path}/deactivate", headers=tenant.headers)
    assert first.status_code == 202, first.text
    assert first.json() == {"body": {}, "statusCode": "ACCEPTED", "statusCodeValue": 202}
    state = (await client.get(path, headers=tenant.headers)).json()
    assert state["active"] is False
    assert state["deactivatedAt"] is not None
    assert state["deactivatedReason"] == "deactivated through the API"

    second = await client.put(f"{path}/deactivate", headers=tenant.headers)
    assert second.status_code == 202
    assert second.json() == first.json()
    assert (await client.get(path, headers=tenant.headers)).json() == state

    async with context.db.write() as conn:  # as the dispatcher would, before auto-disabling
        await conn.execute(
            update(subscription_table)
            .where(subscription_table.c.tenant == tenant.name)
            .values(failing_since=utcnow())
        )
    activated = await client.put(f"{path}/activate", headers=tenant.headers)
    assert activated.status_code == 200, activated.text
    data = activated.json()
    assert data["active"] is True
    assert data["deactivatedAt"] is None
    assert data["deactivatedReason"] is None
    assert (await stored_row(context, tenant.name, created["id"]))["failing_since"] is None
    again = await client.put(f"{path}/activate", headers=tenant.headers)
    assert again.status_code == 200
    assert again.json() == data

    for verb in ("activate", "deactivate"):
        unknown = await client.put(f"{URL}/{new_id()}/{verb}", headers=tenant.headers)
        assert unknown.status_code == 404


async def test_put_active_false_and_true(client, tenant: TenantFixture) -> None:
    created = await create(client, tenant, subscription_body())
    path = f"{URL}/{created['id']}"
    off = (await client.put(path, json={"active": False}, headers=tenant.headers)).json()
    assert (off["active"], off["deactivatedReason"]) == (False, "deactivated through the API")
    on = (await client.put(path, json={"active": True}, headers=tenant.headers)).json()
    assert (on["active"], on["deactivatedAt"]) == (True, None)


# --- tenancy and auth -----------------------------------------------------------------------


async def test_another_tenants_subscription_is_not_found_anywhere(
    client, tenant: TenantFixture, other_tenant: TenantFixture, context: Runtime
) -> None:
    body = subscription_body()
    created = await create(client, tenant, body)
    path = f"{URL}/{created['id']}"
    theirs = other_tenant.headers
    assert (await client.get(path, headers=theirs)).status_code == 404
    assert (await client.put(path, json={"active": False}, headers=theirs)).status_code == 404
    assert (await client.put(URL, json=body, headers=theirs)).status_code == 404
    assert (await client.put(f"{path}/deactivate", headers=theirs)).status_code == 404
    assert (await client.put(f"{path}/activate", headers=theirs)).status_code == 404
    listed = await client.get(URL, params={"include_inactive": "true"}, headers=theirs)
    assert listed.json() == []
    # nothing changed for the owner
    assert (await client.get(path, headers=tenant.headers)).json() == created
    # ids are per tenant: the other tenant may use the same id
    assert (await client.post(URL, json=body, headers=theirs)).status_code == 201
    assert (await stored_row(context, tenant.name, created["id"]))["active"] is True


async def test_auth_and_scopes(client, tenant: TenantFixture, context: Runtime) -> None:
    assert (await client.get(URL)).status_code == 401
    reader = await make_tenant(context, client, scopes=["subscriptions:read"])
    assert (await client.get(URL, headers=reader.headers)).status_code == 200
    refused = await client.post(URL, json=subscription_body(), headers=reader.headers)
    assert refused.status_code == 403
    events_only = await make_tenant(context, client, scopes=["events:read", "events:write"])
    assert (await client.get(URL, headers=events_only.headers)).status_code == 403
    wrong_tenant = {**tenant.headers, "X-TWC-Tenant": reader.name}
    assert (await client.get(URL, headers=wrong_tenant)).status_code == 403


async def test_concurrent_creates_with_one_id(client, tenant: TenantFixture) -> None:
    body = subscription_body()
    responses = await asyncio.gather(
        *(client.post(URL, json=body, headers=tenant.headers) for _ in range(6))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409, 409]

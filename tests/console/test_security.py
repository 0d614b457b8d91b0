"""The console's session: cookie flags, CSRF on every form, tenant isolation, scopes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.console.conftest import LiveConsole
from tests.delivery.helpers import webhook_secret

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@asynccontextmanager
async def _signed_in(
    live: LiveConsole, scopes: list[str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client signed in to the console as a new tenant."""
    tenant = await live.tenant(scopes)
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        await _sign_in(http, tenant.client_id, tenant.client_secret)
        yield http


async def _sign_in(http: httpx.AsyncClient, client_id: str, client_secret: str) -> None:
    response = await http.post(
        "/console/sign-in",
        data={"client_id": client_id, "client_secret": client_secret},
    )
    assert response.status_code == 303, response.text


async def test_session_cookie_is_httponly_samesite_strict(live: LiveConsole) -> None:
    tenant = await live.tenant()
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        await _check_cookie(http, tenant.client_id, tenant.client_secret)


async def _check_cookie(http: httpx.AsyncClient, client_id: str, client_secret: str) -> None:
    response = await http.post(
        "/console/sign-in",
        data={"client_id": client_id, "client_secret": client_secret},
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("ec_console=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    wrong = await http.post(
        "/console/sign-in", data={"client_id": client_id, "client_secret": "nope"}
    )
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers


async def test_forms_without_a_valid_csrf_token_are_refused(live: LiveConsole) -> None:
    async with _signed_in(live) as http:
        page = await http.get("/console/subscriptions/new")
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        form = {
            "entity_type": "ORDER",
            "destination_type": "WEBHOOK",
            "webhook_url": "http://127.0.0.1:9/x",
            "id": "csrf-test",
            "active": "on",
        }
        for bad in ({}, {"csrf": ""}, {"csrf": token[:-2] + "xx"}):
            refused = await http.post("/console/subscriptions/new", data=form | bad)
            assert refused.status_code == 403, refused.text
            assert "CSRF" in refused.text
        listed = await http.get("/console/subscriptions")
        assert "csrf-test" not in listed.text  # nothing was created
        # Another session's token does not fit this session.
        async with _signed_in(live) as other:
            other_token = CSRF.search((await other.get("/console/jobs/new")).text).group(1)  # type: ignore[union-attr]
        assert other_token != token
        refused = await http.post("/console/subscriptions/new", data=form | {"csrf": other_token})
        assert refused.status_code == 403
        accepted = await http.post("/console/subscriptions/new", data=form | {"csrf": token})
        assert accepted.status_code == 200  # the generated secret is shown once
        assert "csrf-test" in (await http.get("/console/subscriptions")).text


async def test_signed_out_pages_ask_for_sign_in(live: LiveConsole) -> None:
    async with httpx.AsyncClient(base_url=live.base_url) as anonymous:
        await _signed_out_checks(anonymous)


async def _signed_out_checks(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/console/events")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fevents"
    forged = await anonymous.post("/console/subscriptions/x/deactivate", data={"csrf": "x"})
    assert forged.status_code == 303
    assert "sign-in" in forged.headers["location"]
    # An open redirect is not possible through `next`.
    page = await anonymous.get("/console/sign-in", params={"next": "//evil.example/"})
    assert 'value="/console"' in page.text


async def test_another_tenants_ids_are_404(live: LiveConsole) -> None:
    async with _signed_in(live) as owner, _signed_in(live) as intruder:
        token = CSRF.search((await owner.get("/console/subscriptions/new")).text).group(1)  # type: ignore[union-attr]
        created = await owner.post(
            "/console/subscriptions/new",
            data={
                "csrf": token,
                "id": "mine",
                "entity_type": "ORDER",
                "active": "on",
                "destination_type": "WEBHOOK",
                "webhook_url": "http://127.0.0.1:9/x",
                "webhook_secret": webhook_secret(),
            },
        )
        assert created.status_code == 303, created.text
        assert (await owner.get("/console/subscriptions/mine")).status_code == 200
        assert (await intruder.get("/console/subscriptions/mine")).status_code == 404
        assert (await intruder.get("/console/events/some-event")).status_code == 404
        assert (await intruder.get("/console/jobs/mine")).status_code == 404
        assert (await intruder.get("/console/customers", params={"q": "c1"})).status_code == 404
        intruder_token = CSRF.search((await intruder.get("/console/jobs/new")).text).group(1)  # type: ignore[union-attr]
        for action in ("deactivate", "activate", "test"):
            response = await intruder.post(
                f"/console/subscriptions/mine/{action}", data={"csrf": intruder_token}
            )
            assert response.status_code == 404, action
        page = await owner.get("/console/subscriptions/mine")
        assert "Deactivate" in page.text  # still active


async def test_scopes_apply_as_in_the_api(live: LiveConsole) -> None:
    async with _signed_in(live, scopes=["events:read"]) as reader:
        assert (await reader.get("/console/events")).status_code == 200
        assert (await reader.get("/console/subscriptions")).status_code == 403
        assert (await reader.get("/console/jobs")).status_code == 403


async def test_secrets_are_masked_and_kept_when_left_blank(live: LiveConsole) -> None:
    tenant = await live.tenant()
    secret = webhook_secret()
    created = await live.http.post(
        "/api/v1/event-subscription",
        json={
            "id": "masked",
            "entityType": "ORDER",
            "destination": {
                "type": "WEBHOOK",
                "webhook": {"url": "http://127.0.0.1:9/a", "secret": secret},
            },
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        await _sign_in(http, tenant.client_id, tenant.client_secret)
        page = await http.get("/console/subscriptions/masked")
        assert secret not in page.text
        assert f"********{secret[-4:]}" in page.text
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        form = {
            "csrf": token,
            "entity_type": "ORDER",
            "active": "on",
            "destination_type": "WEBHOOK",
            "webhook_url": "http://127.0.0.1:9/b",
            "webhook_secret": "",
        }
        saved = await http.post("/console/subscriptions/masked", data=form)
        assert saved.status_code == 303, saved.text

        async def stored() -> dict:
            response = await live.http.get(
                "/api/v1/event-subscription/masked", headers=tenant.headers
            )
            return dict(response.json()["destination"]["webhook"])

        webhook = await stored()
        assert webhook["url"] == "http://127.0.0.1:9/b"
        assert webhook["secret"] == f"********{secret[-4:]}"  # kept
        replacement = webhook_secret()
        saved = await http.post(
            "/console/subscriptions/masked", data=form | {"webhook_secret": replacement}
        )
        assert saved.status_code == 303
        assert (await stored())["secret"] == f"********{replacement[-4:]}"
        # A bad form changes nothing and says why, on a page with the console's navigation.
        refused = await http.post(
            "/console/subscriptions/masked", data=form | {"webhook_url": "ftp://x"}
        )
        assert refused.status_code == 400
        assert "webhook" in refused.text
        assert "Sign out" in refused.text
        assert (await stored())["url"] == "http://127.0.0.1:9/b"


async def test_aws_destination_secret_is_masked_and_kept(live: LiveConsole) -> None:
    tenant = await live.tenant()
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        await _sign_in(http, tenant.client_id, tenant.client_secret)
        token = CSRF.search((await http.get("/console/subscriptions/new")).text).group(1)  # type: ignore[union-attr]
        form = {
            "csrf": token,
            "id": "to-sqs",
            "entity_type": "CUSTOMER",
            "active": "on",
            "subscribe_create": "on",
            "destination_type": "SQS",
            "sqs_queueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/customers",
            "sqs_accessKey": "AKIAEXAMPLE",
            "sqs_accessSecret": "aws-secret-value-1234",
            # The webhook block of the same form is ignored for an SQS destination.
            "webhook_url": "http://ignored.example/",
        }
        created = await http.post("/console/subscriptions/new", data=form)
        assert created.status_code == 303, created.text
        page = await http.get("/console/subscriptions/to-sqs")
        assert "aws-secret-value-1234" not in page.text
        assert "********1234" in page.text
        saved = await http.post(
            "/console/subscriptions/to-sqs", data=form | {"sqs_accessSecret": "", "id": ""}
        )
        assert saved.status_code == 303, saved.text
    stored = await live.http.get("/api/v1/event-subscription/to-sqs", headers=tenant.headers)
    body = stored.json()
    assert body["destination"]["type"] == "SQS"
    assert body["destination"]["sqs"]["region"] == "eu-west-1"
    assert body["destination"]["sqs"]["accessSecret"] == "********1234"
    assert (body["subscribeCreate"], body["subscribeChange"]) == (True, False)

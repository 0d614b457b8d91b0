"""Subscriptions: the list with health, the create/edit form, test, activate, deactivate.

Each form handler calls the service function its API operation calls (see ``operations.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from event_collector.console.web import (
    Console,
    ConsoleRoute,
    Form,
    Session,
    parse_body,
    quoted,
    redirect,
)
from event_collector.delivery import service as delivery_service
from event_collector.kit.db import utcnow
from event_collector.kit.errors import ValidationFailed
from event_collector.subscriptions import service
from event_collector.subscriptions.schemas import (
    DESTINATION_TYPES,
    SUBSCRIPTION_ENTITY_TYPES,
    SubscriptionIn,
    SubscriptionUpdate,
)

router = APIRouter(prefix="/console/subscriptions", route_class=ConsoleRoute)
HEALTH_WINDOW = timedelta(hours=24)

# The form's fields per destination type (the secret ones are never echoed).
_FIELDS = {
    "WEBHOOK": ("url", "secret"),
    "SQS": ("queueUrl", "region", "accessKey", "accessSecret"),
    "SNS": ("topicArn", "region", "accessKey", "accessSecret"),
}
SECRET_FIELDS = frozenset({"secret", "accessSecret"})


def _policy(console: Console) -> service.Policy:
    runtime = console.runtime
    return service.Policy.of(runtime.secrets, runtime.settings)


def _headers(text: str) -> dict[str, str]:
    headers = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ValidationFailed(
                [
                    {
                        "loc": ["destination", "webhook", "headers"],
                        "msg": f"line {number}: write one header per line as 'Name: value'",
                    }
                ]
            )
        headers[name.strip()] = value.strip()
    return headers


def _body(form: Form) -> dict[str, Any]:
    """The API's JSON body from the form: a blank secret is left out, so the stored one stays."""
    kind = form.get("destination_type", "WEBHOOK").upper()
    block: dict[str, Any] = {}
    for name in _FIELDS.get(kind, ()):
        value = form.get(f"{kind.lower()}_{name}")
        if value or name not in SECRET_FIELDS:
            block[name] = value or None
    if kind == "WEBHOOK":
        block["headers"] = _headers(form.get("webhook_headers"))
    body: dict[str, Any] = {
        "entityType": form.get("entity_type"),
        "active": form.checked("active"),
        "subscribeCreate": form.checked("subscribe_create"),
        "subscribeChange": form.checked("subscribe_change"),
        "subscribeDelete": form.checked("subscribe_delete"),
        "destination": {"type": kind, kind.lower(): block},
    }
    if form.optional("id"):
        body["id"] = form.get("id")
    return body


def _form_page(console: Console, subscription: dict[str, Any] | None, **extra: Any) -> Response:
    return console.render(
        "subscription_form.html",
        subscription=subscription,
        entity_types=SUBSCRIPTION_ENTITY_TYPES,
        destination_types=DESTINATION_TYPES,
        **extra,
    )


@router.get("")
async def list_page(console: Session) -> Response:
    console.require("subscriptions:read")
    now = utcnow()
    async with console.runtime.db.read() as conn:
        rows = await service.list_subscriptions(conn, console.tenant, include_inactive=True)
        health = await delivery_service.health(conn, console.tenant, now - HEALTH_WINDOW)
    dispatcher = console.runtime.dispatcher
    open_circuits = dispatcher.open_circuits() if dispatcher is not None else set()
    policy = _policy(console)
    items = [
        {
            "api": service.to_api(row, policy),
            "health": health.get(row["id"], delivery_service.Health()),
            "failing_since": row["failing_since"],
            "circuit_open": (console.tenant, row["id"]) in open_circuits,
        }
        for row in rows
    ]
    return console.render("subscriptions.html", items=items)


@router.get("/new")
async def new_form(console: Session) -> Response:
    console.require("subscriptions:write")
    return _form_page(console, None)


@router.post("/new")
async def create(console: Session) -> Response:
    console.require("subscriptions:write")
    form = await Form.of(console)
    body = parse_body(SubscriptionIn, _body(form))
    policy = _policy(console)
    async with console.runtime.db.write() as conn:
        written = await service.create_subscription(conn, policy, console.tenant, body, utcnow())
    return _written(console, written, policy, "Subscription created.")


@router.get("/{subscription_id}")
async def edit_form(console: Session, subscription_id: str) -> Response:
    console.require("subscriptions:read")
    async with console.runtime.db.read() as conn:
        row = await service.get_subscription(conn, console.tenant, subscription_id)
        health = await delivery_service.health(conn, console.tenant, utcnow() - HEALTH_WINDOW)
    return _form_page(
        console,
        service.to_api(row, _policy(console)),
        health=health.get(row["id"], delivery_service.Health()),
        failing_since=row["failing_since"],
    )


@router.post("/{subscription_id}")
async def update(console: Session, subscription_id: str) -> Response:
    console.require("subscriptions:write")
    form = await Form.of(console)
    body = parse_body(SubscriptionUpdate, _body(form) | {"id": subscription_id})
    policy = _policy(console)
    async with console.runtime.db.write() as conn:
        written = await service.update_subscription(
            conn, policy, console.tenant, subscription_id, body, utcnow()
        )
    return _written(console, written, policy, "Subscription saved.")


def _written(
    console: Console, written: service.Written, policy: service.Policy, notice: str
) -> Response:
    """After a create or an update: a generated signing secret is shown once, on this page (as
    the API shows it once); otherwise back to the subscription's page."""
    api = service.to_api(written.row, policy, reveal_secret=written.reveal_secret)
    if written.reveal_secret:
        return _form_page(console, api, revealed=api["destination"]["webhook"]["secret"])
    return redirect(f"/console/subscriptions/{quoted(written.row['id'])}", notice)


@router.post("/{subscription_id}/activate")
async def activate(console: Session, subscription_id: str) -> Response:
    return await _set_active(console, subscription_id, True)


@router.post("/{subscription_id}/deactivate")
async def deactivate(console: Session, subscription_id: str) -> Response:
    return await _set_active(console, subscription_id, False)


async def _set_active(console: Console, subscription_id: str, active: bool) -> Response:
    console.require("subscriptions:write")
    await Form.of(console)
    async with console.runtime.db.write() as conn:
        await service.set_active(conn, console.tenant, subscription_id, active, utcnow())
    notice = "Subscription activated." if active else "Subscription deactivated."
    return redirect(f"/console/subscriptions/{quoted(subscription_id)}", notice)


@router.post("/{subscription_id}/test")
async def test(console: Session, subscription_id: str) -> Response:
    console.require("subscriptions:write")
    await Form.of(console)
    runtime = console.runtime
    dispatcher = runtime.dispatcher
    result = await delivery_service.send_test_message(
        runtime.db,
        runtime.secrets,
        runtime.settings,
        dispatcher.senders if dispatcher is not None else None,
        console.tenant,
        subscription_id,
    )
    if result.ok:
        notice = f"Test message delivered ({result.status_code or 'ok'}, {result.latency_ms} ms)."
    else:
        notice = f"Test message failed: {result.error}"
    return redirect(f"/console/subscriptions/{quoted(subscription_id)}", notice)

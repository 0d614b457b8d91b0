"""The rules of event subscriptions: validation beyond shape, secrets, state changes.

Secrets (an AWS ``accessSecret`` or a webhook signing secret) are sealed with the server's
:class:`~event_collector.kit.crypto.SecretBox`, bound to ``"<tenant>:<subscription id>"`` as
associated data, and stored in ``secret_sealed``; a webhook's custom headers (names and values,
as one JSON object: they carry credentials such as ``Authorization``) are sealed the same way,
bound to ``"<tenant>:<subscription id>:headers"``, in ``headers_sealed``. The ``destination``
JSON never holds either. Responses show secrets (and sensitive header values) masked. A PUT that
omits the secret, or sends the masked value back, keeps the stored one; a new value replaces it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.kit.awsallow import ServerCredentialsPolicy
from event_collector.kit.crypto import (
    ResealProgress,
    SecretBox,
    SecretDecryptionError,
    is_masked,
    mask,
)
from event_collector.kit.errors import BadRequest, Conflict, NotFound, ValidationFailed
from event_collector.kit.netpolicy import url_refusal
from event_collector.kit.settings import Settings
from event_collector.kit.timefmt import isoformat_z
from event_collector.subscriptions.destinations import (
    WEBHOOK_SECRET_PREFIX,
    Destination,
    is_sensitive_header,
    normalize_destination,
)
from event_collector.subscriptions.repository import SubscriptionRepository
from event_collector.subscriptions.schemas import DestinationIn, SubscriptionIn, SubscriptionUpdate

logger = logging.getLogger(__name__)

DEACTIVATED_BY_API = "deactivated through the API"
CREATED_INACTIVE = "created inactive"
DEACTIVATE_ACCEPTED: dict[str, Any] = {
    "body": {},
    "statusCode": "ACCEPTED",
    "statusCodeValue": 202,
}


@dataclass(frozen=True, slots=True)
class Policy:
    """What the service needs from the server: the secret box, the SSRF allow-list and the
    destinations the server's own AWS credentials may be used for (none by default) and the
    per-tenant cap."""

    box: SecretBox
    webhook_allowed_hosts: Sequence[str] = ()
    aws_server_credentials: ServerCredentialsPolicy = dataclasses.field(
        default_factory=lambda: ServerCredentialsPolicy(())
    )
    max_subscriptions: int = 100

    @classmethod
    def of(cls, box: SecretBox, settings: Settings) -> Policy:
        return cls(
            box,
            settings.webhook_allowed_hosts,
            aws_server_credentials=settings.aws_server_credentials,
            max_subscriptions=settings.max_subscriptions_per_tenant,
        )


@dataclass(slots=True)
class Written:
    """A stored subscription, and the secret to show in full once (a generated one), if any."""

    row: dict[str, Any]
    reveal_secret: str | None = None


def secret_associated_data(tenant: str, subscription_id: str) -> str:
    """What a subscription's sealed secret is bound to (the dispatcher opens it with the same)."""
    return f"{tenant}:{subscription_id}"


def headers_associated_data(tenant: str, subscription_id: str) -> str:
    """What a subscription's sealed custom headers are bound to (not swappable with its secret)."""
    return f"{tenant}:{subscription_id}:headers"


def seal_headers(
    box: SecretBox, tenant: str, subscription_id: str, headers: dict[str, str]
) -> str | None:
    if not headers:
        return None
    return box.seal(
        json.dumps(headers), associated_data=headers_associated_data(tenant, subscription_id)
    )


def open_headers(
    box: SecretBox, tenant: str, subscription_id: str, sealed: str | None
) -> dict[str, str]:
    """The custom headers sealed in ``sealed``; raises SecretDecryptionError when they cannot
    be opened."""
    if not sealed:
        return {}
    opened = box.open(sealed, associated_data=headers_associated_data(tenant, subscription_id))
    headers: dict[str, str] = json.loads(opened)
    return headers


def generate_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _secret_loc(destination: DestinationIn | None, kind: str) -> list[str | int]:
    if kind == "WEBHOOK":
        return ["destination", "webhook", "secret"]
    block = "sns" if destination is not None and destination.sns is not None else "sqs"
    return ["destination", block, "accessSecret"]


def _problem(loc: list[str | int], msg: str) -> ValidationFailed:
    return ValidationFailed([{"loc": loc, "msg": msg, "type": "value_error"}])


def _validate_destination(destination: DestinationIn, policy: Policy, tenant: str) -> Destination:
    normalized = normalize_destination(destination)
    if normalized.type == "WEBHOOK":
        problem = url_refusal(normalized.config["url"], policy.webhook_allowed_hosts)
        if problem:
            raise _problem(["destination", "webhook", "url"], problem)
    else:
        problem = policy.aws_server_credentials.refusal(tenant, normalized.type, normalized.config)
        if problem:
            block = "sns" if destination.sns is not None else "sqs"
            raise _problem(["destination", block, "accessKey"], problem)
    return normalized


def _open_secret(policy: Policy, row: dict[str, Any]) -> str | None:
    sealed = row.get("secret_sealed")
    if not sealed:
        return None
    try:
        return policy.box.open(
            sealed, associated_data=secret_associated_data(row["tenant"], row["id"])
        )
    except SecretDecryptionError:
        # Shown as a bare mask; the dispatcher reports the failure on its attempts.
        logger.warning(
            "the stored secret of subscription %s cannot be opened (key missing?)", row["id"]
        )
        return None


def _stored_headers(policy: Policy, row: dict[str, Any] | None) -> dict[str, str]:
    """A stored webhook's custom headers in clear ({} when there are none or they cannot be
    opened: a missing key is logged, and masked values sent back are then refused)."""
    if row is None or row["destination_type"] != "WEBHOOK":
        return {}
    try:
        return open_headers(policy.box, row["tenant"], row["id"], row.get("headers_sealed"))
    except SecretDecryptionError:
        logger.warning(
            "the stored headers of subscription %s cannot be opened (key missing?)", row["id"]
        )
        return {}


def _resolve_secret(
    new: Destination,
    source: DestinationIn,
    stored_row: dict[str, Any] | None,
    policy: Policy,
) -> tuple[str | None, str | None]:
    """(the plaintext secret to store, the secret to reveal once) for a destination being written.

    ``stored_row`` is the subscription being updated (None on create).
    """
    loc = _secret_loc(source, new.type)
    stored_type = stored_row["destination_type"] if stored_row else None
    stored_config = stored_row["destination"] if stored_row else {}
    secret = new.secret

    if secret is not None and not is_masked(secret):
        return secret, None

    if new.type == "WEBHOOK":
        if stored_type == "WEBHOOK":
            kept = _open_secret(policy, stored_row) if stored_row else None
            if kept is not None:
                return kept, None
        if secret is not None:  # masked, nothing to keep
            raise _problem(loc, "is masked but there is no stored secret to keep; send it in full")
        generated = generate_webhook_secret()
        return generated, generated

    # SQS / SNS: the secret pairs with the access key.
    if new.config.get("accessKey") is None:
        return None, None
    same_key = stored_type in ("SQS", "SNS") and stored_config.get("accessKey") == new.config.get(
        "accessKey"
    )
    if same_key and stored_row is not None:
        kept = _open_secret(policy, stored_row)
        if kept is not None:
            return kept, None
    if secret is not None:
        raise _problem(loc, "is masked but there is no stored secret for this accessKey to keep")
    raise _problem(
        loc,
        "is required with accessKey (send both, or neither to use the server's own credentials)",
    )


def _split_headers(
    new: Destination, stored_row: dict[str, Any] | None, policy: Policy
) -> tuple[dict[str, Any], dict[str, str]]:
    """(the destination JSON to store, the custom headers to seal): masked header values sent
    back keep the stored values."""
    config = dict(new.config)
    sent: dict[str, str] = config.pop("headers", None) or {}
    stored = {name.lower(): value for name, value in _stored_headers(policy, stored_row).items()}
    headers: dict[str, str] = {}
    for name, value in sent.items():
        if is_masked(value):
            if name.lower() not in stored:
                raise _problem(
                    ["destination", "webhook", "headers", name],
                    "is masked but there is no stored value to keep; send it in full",
                )
            value = stored[name.lower()]
        headers[name] = value
    return config, headers


def _seal(policy: Policy, tenant: str, subscription_id: str, secret: str | None) -> str | None:
    if secret is None:
        return None
    return policy.box.seal(secret, associated_data=secret_associated_data(tenant, subscription_id))


async def create_subscription(
    conn: AsyncConnection, policy: Policy, tenant: str, body: SubscriptionIn, now: datetime
) -> Written:
    destination = _validate_destination(body.destination, policy, tenant)
    secret, reveal = _resolve_secret(destination, body.destination, None, policy)
    config, headers = _split_headers(destination, None, policy)
    subscription_id = body.id or str(uuid.uuid4())
    repository = SubscriptionRepository.from_connection(conn)
    if await repository.get(tenant, subscription_id) is not None:
        raise Conflict(f"a subscription with id {subscription_id!r} already exists")
    # Count, then insert: concurrent creates can each pass the check (docs/limits.md).
    if await repository.count_for_tenant(tenant) >= policy.max_subscriptions:
        raise BadRequest(
            f"the tenant has {policy.max_subscriptions} subscriptions, the most it may have "
            "(EC_MAX_SUBSCRIPTIONS_PER_TENANT): change an existing one instead"
        )
    row = {
        "tenant": tenant,
        "id": subscription_id,
        "entity_type": body.entityType,
        "active": body.active,
        "subscribe_create": body.subscribeCreate,
        "subscribe_change": body.subscribeChange,
        "subscribe_delete": body.subscribeDelete,
        "destination_type": destination.type,
        "destination": config,
        "secret_sealed": _seal(policy, tenant, subscription_id, secret),
        "headers_sealed": seal_headers(policy.box, tenant, subscription_id, headers),
        "created_at": now,
        "updated_at": now,
        "failing_since": None,
        "deactivated_at": None if body.active else now,
        "deactivated_reason": None if body.active else CREATED_INACTIVE,
    }
    try:
        await repository.insert(row)
    except IntegrityError:  # a concurrent create won the race (PostgreSQL)
        raise Conflict(f"a subscription with id {subscription_id!r} already exists") from None
    logger.info(
        "subscription created: %s (%s, %s)", subscription_id, body.entityType, destination.type
    )
    return Written(row, reveal)


async def update_subscription(
    conn: AsyncConnection,
    policy: Policy,
    tenant: str,
    subscription_id: str | None,
    body: SubscriptionUpdate,
    now: datetime,
) -> Written:
    """PUT: the fields present replace the stored ones; absent fields keep their values.

    ``subscription_id`` is the path id (None for ``PUT /event-subscription`` with the id in the
    body); a different id in the body is refused.
    """
    if subscription_id is None:
        if body.id is None:
            raise _problem(["id"], "is required (or use PUT /api/v1/event-subscription/{id})")
        subscription_id = body.id
    elif body.id is not None and body.id != subscription_id:
        raise BadRequest(
            f"the body's id {body.id!r} differs from the path's id {subscription_id!r}; "
            "a subscription's id cannot change"
        )
    destination = (
        _validate_destination(body.destination, policy, tenant)
        if body.destination is not None
        else None
    )
    repository = SubscriptionRepository.from_connection(conn)
    stored = await repository.get(tenant, subscription_id, for_update=True)
    if stored is None:
        raise NotFound(f"no subscription with id {subscription_id!r}")

    changes: dict[str, Any] = {"updated_at": now}
    if body.entityType is not None:
        changes["entity_type"] = body.entityType
    for field, column in (
        ("subscribeCreate", "subscribe_create"),
        ("subscribeChange", "subscribe_change"),
        ("subscribeDelete", "subscribe_delete"),
    ):
        value = getattr(body, field)
        if value is not None:
            changes[column] = value
    if body.active is not None and body.active != stored["active"]:
        changes.update(_activation_changes(body.active, now, DEACTIVATED_BY_API))

    reveal: str | None = None
    if destination is not None:
        assert body.destination is not None
        secret, reveal = _resolve_secret(destination, body.destination, stored, policy)
        config, headers = _split_headers(destination, stored, policy)
        before = (
            stored["destination_type"],
            stored["destination"],
            _stored_headers(policy, stored),
        )
        changes["destination_type"] = destination.type
        changes["destination"] = config
        changes["secret_sealed"] = _seal(policy, tenant, subscription_id, secret)
        changes["headers_sealed"] = seal_headers(policy.box, tenant, subscription_id, headers)
        if (destination.type, config, headers) != before:
            changes["failing_since"] = None  # a new destination starts with a clean slate

    await repository.update(tenant, subscription_id, changes)
    stored.update(changes)
    logger.info("subscription updated: %s", subscription_id)
    return Written(stored, reveal)


def _activation_changes(active: bool, now: datetime, reason: str) -> dict[str, Any]:
    if active:
        return {
            "active": True,
            "deactivated_at": None,
            "deactivated_reason": None,
            "failing_since": None,
        }
    return {"active": False, "deactivated_at": now, "deactivated_reason": reason}


async def get_subscription(
    conn: AsyncConnection, tenant: str, subscription_id: str
) -> dict[str, Any]:
    row = await SubscriptionRepository.from_connection(conn).get(tenant, subscription_id)
    if row is None:
        raise NotFound(f"no subscription with id {subscription_id!r}")
    return row


async def list_subscriptions(
    conn: AsyncConnection, tenant: str, *, include_inactive: bool
) -> list[dict[str, Any]]:
    return await SubscriptionRepository.from_connection(conn).list_for_tenant(
        tenant, include_inactive=include_inactive
    )


async def set_active(
    conn: AsyncConnection, tenant: str, subscription_id: str, active: bool, now: datetime
) -> dict[str, Any]:
    """Activate or deactivate; idempotent (an unchanged state keeps its timestamps)."""
    repository = SubscriptionRepository.from_connection(conn)
    row = await repository.get(tenant, subscription_id, for_update=True)
    if row is None:
        raise NotFound(f"no subscription with id {subscription_id!r}")
    if row["active"] != active:
        changes = {"updated_at": now, **_activation_changes(active, now, DEACTIVATED_BY_API)}
        await repository.update(tenant, subscription_id, changes)
        row.update(changes)
        logger.info(
            "subscription %s: %s", "activated" if active else "deactivated", subscription_id
        )
    return row


def to_api(
    row: dict[str, Any], policy: Policy, *, reveal_secret: str | None = None
) -> dict[str, Any]:
    """The subscription as the API shows it: camelCase, secrets masked.

    ``reveal_secret`` is a secret the server just generated: shown in full this once.
    """
    secret = reveal_secret or _open_secret(policy, row)
    shown_secret = reveal_secret if reveal_secret else (mask(secret) if secret else None)
    if row["secret_sealed"] and secret is None:
        shown_secret = "********"  # stored but cannot be opened: still never shown
    config = row["destination"]
    kind = row["destination_type"]
    destination: dict[str, Any] = {"type": kind}
    if kind == "SQS":
        destination["sqs"] = {
            "queueUrl": config["queueUrl"],
            "region": config["region"],
            "accessKey": config.get("accessKey"),
            "accessSecret": shown_secret,
        }
    elif kind == "SNS":
        destination["sns"] = {
            "topicArn": config["topicArn"],
            "region": config["region"],
            "accessKey": config.get("accessKey"),
            "accessSecret": shown_secret,
        }
    else:
        destination["webhook"] = {
            "url": config["url"],
            "secret": shown_secret,
            "headers": {
                name: (mask(value) if is_sensitive_header(name) else value)
                for name, value in _stored_headers(policy, row).items()
            },
        }
    deactivated_at = row["deactivated_at"]
    return {
        "id": row["id"],
        "active": row["active"],
        "entityType": row["entity_type"],
        "subscribeCreate": row["subscribe_create"],
        "subscribeChange": row["subscribe_change"],
        "subscribeDelete": row["subscribe_delete"],
        "destination": destination,
        "createdAt": isoformat_z(row["created_at"]),
        "updatedAt": isoformat_z(row["updated_at"]),
        "deactivatedAt": isoformat_z(deactivated_at) if deactivated_at else None,
        "deactivatedReason": row["deactivated_reason"],
    }


async def reseal_batch(
    conn: AsyncConnection, box: SecretBox, after: tuple[str, str] | None, limit: int = 200
) -> ResealProgress[tuple[str, str]]:
    """Re-seal, with the newest key, the secrets sealed with an older one (after a rotation).

    Secrets no key can open are counted and left as they are. Returns ``next_after=None`` once
    every subscription has been examined.
    """
    repository = SubscriptionRepository.from_connection(conn)
    rows = await repository.sealed_secrets_after(after, limit)
    progress = ResealProgress[tuple[str, str]](
        next_after=(rows[-1].tenant, rows[-1].id) if len(rows) == limit else None,
        examined=len(rows),
    )
    for row in rows:
        for column, associated_data in (
            ("secret_sealed", secret_associated_data(row.tenant, row.id)),
            ("headers_sealed", headers_associated_data(row.tenant, row.id)),
        ):
            sealed = getattr(row, column)
            if not sealed:
                continue
            try:
                resealed = box.resealed(sealed, associated_data=associated_data)
            except SecretDecryptionError:
                progress.unreadable += 1
                logger.warning(
                    "cannot open the %s of subscription %s of %s", column, row.id, row.tenant
                )
                continue
            if resealed is not None and await repository.replace_sealed(
                row.tenant, row.id, column, sealed, resealed
            ):
                progress.resealed += 1
    return progress

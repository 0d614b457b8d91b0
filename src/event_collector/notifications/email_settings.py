"""A tenant's email settings (provider, sender, reply-to, SendGrid key) over server defaults.

The SendGrid key is sealed with kit.crypto.SecretBox (bound to the tenant as associated data,
so a sealed key copied to another tenant's row does not open) and only ever shown masked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from event_collector.kit.crypto import (
    ResealProgress,
    SecretBox,
    SecretDecryptionError,
    is_masked,
    mask,
)
from event_collector.kit.db import AnyConnection
from event_collector.kit.settings import Settings
from event_collector.notifications.channels import Sender
from event_collector.notifications.repository import NotificationRepository

logger = logging.getLogger(__name__)

_FIELDS = ("provider", "sender_email", "sender_name", "reply_to_email", "reply_to_name")

UNREADABLE_KEY = (
    "the stored SendGrid API key cannot be opened (the secret key that sealed it is gone); "
    "set it again with PUT /api/v1/email-settings"
)


def _associated(tenant: str) -> str:
    return f"email-settings:{tenant}"


def _open_key(secrets: SecretBox, tenant: str, sealed: str | None) -> tuple[str | None, bool]:
    """The tenant's SendGrid key in clear, and whether a stored key could not be opened (it is
    then None: reading the settings still works, and each send fails saying why)."""
    if not sealed:
        return None, False
    try:
        return secrets.open(sealed, associated_data=_associated(tenant)), False
    except SecretDecryptionError:
        logger.warning(
            "the stored SendGrid key of tenant %s cannot be opened (key missing?)", tenant
        )
        return None, True


async def resolve_sender(
    conn: AnyConnection, settings: Settings, secrets: SecretBox, tenant: str
) -> Sender:
    row = await NotificationRepository(conn).email_settings(tenant)
    stored: dict[str, Any] = dict(row) if row else {}
    key, unreadable = _open_key(secrets, tenant, stored.get("sendgrid_api_key_sealed"))
    return Sender(
        provider=stored.get("provider") or settings.email_provider,
        from_email=stored.get("sender_email") or settings.email_from,
        from_name=stored.get("sender_name"),
        reply_to_email=stored.get("reply_to_email"),
        reply_to_name=stored.get("reply_to_name"),
        # An unreadable tenant key is not replaced by the server's: that would send from
        # another SendGrid account than the tenant chose.
        sendgrid_api_key=None if unreadable else key or settings.sendgrid_api_key,
        sendgrid_api_key_error=UNREADABLE_KEY if unreadable else None,
    )


def _to_api(
    row: Mapping[str, Any] | None, settings: Settings, secrets: SecretBox, tenant: str
) -> dict[str, Any]:
    stored: Mapping[str, Any] = row or {}
    sealed = stored.get("sendgrid_api_key_sealed")
    key, unreadable = _open_key(secrets, tenant, sealed)
    return {
        "provider": stored.get("provider"),
        "sender_email": stored.get("sender_email"),
        "sender_name": stored.get("sender_name"),
        "reply_to_email": stored.get("reply_to_email"),
        "reply_to_name": stored.get("reply_to_name"),
        # Unreadable: a bare mask (a key is stored) and the flag saying it cannot be used.
        "sendgrid_api_key": mask(key) if key else ("********" if unreadable else None),
        "effective": {
            "provider": stored.get("provider") or settings.email_provider,
            "sender_email": stored.get("sender_email") or settings.email_from,
            "sendgrid_api_key_set": bool(sealed or settings.sendgrid_api_key),
            "sendgrid_api_key_unreadable": unreadable,
        },
        "updated_at": stored.get("updated_at"),
    }


async def get_email_settings(
    conn: AnyConnection, settings: Settings, secrets: SecretBox, tenant: str
) -> dict[str, Any]:
    row = await NotificationRepository(conn).email_settings(tenant)
    return _to_api(dict(row) if row else {}, settings, secrets, tenant)


async def put_email_settings(
    conn: AnyConnection,
    settings: Settings,
    secrets: SecretBox,
    tenant: str,
    body: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Fields present replace the stored ones (null clears: back to the server default). A
    SendGrid key sent back masked (as GET shows it) keeps the stored key."""
    repo = NotificationRepository(conn)
    row = await repo.email_settings(tenant)
    current: dict[str, Any] = dict(row) if row else {}
    values = {name: current.get(name) for name in _FIELDS}
    values["sendgrid_api_key_sealed"] = current.get("sendgrid_api_key_sealed")
    for name in _FIELDS:
        if name in body:
            values[name] = body[name]
    if "sendgrid_api_key" in body:
        key = body["sendgrid_api_key"]
        if not key:
            values["sendgrid_api_key_sealed"] = None
        elif not is_masked(key):
            values["sendgrid_api_key_sealed"] = secrets.seal(
                key, associated_data=_associated(tenant)
            )
    values["updated_at"] = now
    await repo.save_email_settings(tenant, values)
    return _to_api({**values, "tenant": tenant}, settings, secrets, tenant)


async def reseal_batch(
    conn: AnyConnection, box: SecretBox, after: str | None, limit: int = 200
) -> ResealProgress[str]:
    """Re-seal, with the newest key, the tenants' SendGrid keys sealed with an older one (after
    a rotation; `event-collector reseal-secrets`). Keys no key can open are counted and left as
    they are. Returns ``next_after=None`` once every tenant's settings have been examined."""
    repo = NotificationRepository(conn)
    rows = await repo.sealed_email_settings_after(after, limit)
    progress = ResealProgress[str](
        next_after=rows[-1].tenant if len(rows) == limit else None, examined=len(rows)
    )
    for row in rows:
        sealed = row.sendgrid_api_key_sealed
        try:
            resealed = box.resealed(sealed, associated_data=_associated(row.tenant))
        except SecretDecryptionError:
            progress.unreadable += 1
            logger.warning("cannot open the stored SendGrid key of tenant %s", row.tenant)
            continue
        if resealed is not None and await repo.replace_sealed_key(row.tenant, sealed, resealed):
            progress.resealed += 1
    return progress

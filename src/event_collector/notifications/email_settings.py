"""A tenant's email settings (provider, sender, reply-to, SendGrid key) over server defaults.

The SendGrid key is sealed with kit.crypto.SecretBox (bound to the tenant as associated data,
so a sealed key copied to another tenant's row does not open) and only ever shown masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from event_collector.kit.crypto import SecretBox, is_masked, mask
from event_collector.kit.db import AnyConnection
from event_collector.kit.settings import Settings
from event_collector.notifications.channels import Sender
from event_collector.notifications.repository import NotificationRepository

_FIELDS = ("provider", "sender_email", "sender_name", "reply_to_email", "reply_to_name")


def _associated(tenant: str) -> str:
    return f"email-settings:{tenant}"


async def resolve_sender(
    conn: AnyConnection, settings: Settings, secrets: SecretBox, tenant: str
) -> Sender:
    row = await NotificationRepository(conn).email_settings(tenant)
    stored: dict[str, Any] = dict(row) if row else {}
    sealed = stored.get("sendgrid_api_key_sealed")
    key = secrets.open(sealed, associated_data=_associated(tenant)) if sealed else None
    return Sender(
        provider=stored.get("provider") or settings.email_provider,
        from_email=stored.get("sender_email") or settings.email_from,
        from_name=stored.get("sender_name"),
        reply_to_email=stored.get("reply_to_email"),
        reply_to_name=stored.get("reply_to_name"),
        sendgrid_api_key=key or settings.sendgrid_api_key,
    )


def _to_api(
    row: Mapping[str, Any] | None, settings: Settings, secrets: SecretBox, tenant: str
) -> dict[str, Any]:
    stored: Mapping[str, Any] = row or {}
    sealed = stored.get("sendgrid_api_key_sealed")
    return {
        "provider": stored.get("provider"),
        "sender_email": stored.get("sender_email"),
        "sender_name": stored.get("sender_name"),
        "reply_to_email": stored.get("reply_to_email"),
        "reply_to_name": stored.get("reply_to_name"),
        "sendgrid_api_key": mask(secrets.open(sealed, associated_data=_associated(tenant)))
        if sealed
        else None,
        "effective": {
            "provider": stored.get("provider") or settings.email_provider,
            "sender_email": stored.get("sender_email") or settings.email_from,
            "sendgrid_api_key_set": bool(sealed or settings.sendgrid_api_key),
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

"""Shapes of the notifications and email-settings API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from event_collector.kit.nul import NoNul


class NotificationOut(BaseModel):
    id: str
    job_id: str
    run_id: str | None
    notification_type: str
    customer_id: str
    recipient: str | None
    channel: str = Field(description="outbox | smtp | sendgrid | message")
    status: str = Field(description="pending | sending | sent | failed | skipped")
    reason: str | None = Field(description="Why it was skipped")
    items: list[dict[str, Any]]
    provider_message_id: str | None
    error: str | None
    attempts: int
    subject: str | None = Field(description="Rendered (outbox and SMTP)")
    text: str | None
    html: str | None
    created_at: datetime
    sent_at: datetime | None


class NotificationPage(BaseModel):
    notifications: list[NotificationOut]
    next_cursor: str | None


# \s differs between the validator (Rust: U+0085 is a space) and JSON Schema (ECMA: U+FEFF is):
# name both, so the document and the check accept the same addresses.
EmailAddress = Annotated[
    str,
    Field(max_length=320, pattern=r"^[^@\s\x85\ufeff]+@[^@\s\x85\ufeff]+\.[^@\s\x85\ufeff]+$"),
    NoNul,
]
Name = Annotated[str, Field(max_length=255), NoNul]  # no NUL: PostgreSQL refuses it (kit.nul)


class EmailSettingsIn(BaseModel):
    """Fields present replace the stored ones; null returns a field to the server default."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["outbox", "smtp", "sendgrid"] | None = None
    sender_email: EmailAddress | None = None
    sender_name: Name | None = None
    reply_to_email: EmailAddress | None = None
    reply_to_name: Name | None = None
    sendgrid_api_key: Annotated[str, NoNul] | None = Field(
        default=None,
        max_length=512,
        description="Write-only; shown masked. Sending the masked value back keeps the key.",
    )


class EffectiveEmailSettings(BaseModel):
    provider: str
    sender_email: str
    sendgrid_api_key_set: bool
    sendgrid_api_key_unreadable: bool = Field(
        description="A key is stored but cannot be opened (the secret key that sealed it was "
        "removed): each SendGrid send fails until a new key is PUT"
    )


class EmailSettingsOut(BaseModel):
    provider: str | None
    sender_email: str | None
    sender_name: str | None
    reply_to_email: str | None
    reply_to_name: str | None
    sendgrid_api_key: str | None = Field(description="Masked")
    effective: EffectiveEmailSettings = Field(description="With the server defaults applied")
    updated_at: datetime | None

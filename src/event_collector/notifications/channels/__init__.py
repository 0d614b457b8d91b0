"""Email channels (DESIGN §6.4): outbox (stored only), SMTP, SendGrid.

A channel that sends (SMTP, SendGrid) takes leased notifications as :class:`OutgoingEmail` and
yields :class:`SendOutcome` batches as soon as they are known, so the caller records each batch
before the next is sent (a crash re-sends at most the batch in flight).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sender:
    """A tenant's email settings over the server's defaults (secrets opened, in memory only)."""

    provider: str
    from_email: str
    from_name: str | None = None
    reply_to_email: str | None = None
    reply_to_name: str | None = None
    sendgrid_api_key: str | None = field(default=None, repr=False)
    # Why there is no usable key although the tenant stored one (it cannot be opened): each
    # send fails with this message rather than the run failing as a whole.
    sendgrid_api_key_error: str | None = None


@dataclass(frozen=True)
class OutgoingEmail:
    notification_id: int
    recipient: str
    recipient_name: str | None
    subject: str | None
    text: str | None
    html: str | None
    template_id: str | None
    template_data: dict[str, Any]
    # String ids only (tenant, job, run, notification): never PII.
    custom_args: dict[str, str]
    categories: list[str]


@dataclass(frozen=True)
class SendOutcome:
    notification_id: int
    sent: bool
    provider_message_id: str | None = None
    error: str | None = None
    # True when the provider certainly did not take the email (e.g. HTTP 400/401/403): its
    # items may be notified again by a later run. False after timeouts (it may have).
    certainly_unsent: bool = False


class EmailChannel(Protocol):
    def send(self, emails: Sequence[OutgoingEmail]) -> AsyncIterator[list[SendOutcome]]: ...

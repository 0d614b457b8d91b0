"""SendGrid v3 mail send (../shared/reference/sendgrid-mail-send.md) over httpx.

One request per up to 1000 notifications (one personalization each, one recipient each), with
the job's template and each customer's ``dynamic_template_data``. 429 and 5xx (and transport
errors) are retried with exponential backoff, honouring ``Retry-After`` / ``X-RateLimit-Reset``;
400/401/403/413 are not retried and are recorded on every notification of the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx

from event_collector.notifications.channels import OutgoingEmail, Sender, SendOutcome

logger = logging.getLogger(__name__)

MAX_PERSONALIZATIONS = 1000
MAX_DELAY_SECONDS = 300.0
PERMANENT = frozenset({400, 401, 403, 404, 405, 413})


def _address(address: str, name: str | None) -> dict[str, str]:
    return {"email": address, "name": name} if name else {"email": address}


def retry_delay(response: httpx.Response | None, attempt: int, base: float) -> float:
    """Seconds to wait before the next attempt: the server's word when it gives one
    (Retry-After as seconds or a date, else X-RateLimit-Reset), else jittered exponential."""
    if response is not None:
        retry_after = response.headers.get("retry-after")
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), MAX_DELAY_SECONDS)
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(retry_after)
                if parsed is not None:
                    return min(max(parsed.timestamp() - time.time(), 0.0), MAX_DELAY_SECONDS)
        reset = response.headers.get("x-ratelimit-reset")
        if reset and reset.isdigit():
            return min(max(int(reset) - time.time(), 0.0), MAX_DELAY_SECONDS)
    return min(base * (2**attempt) * random.uniform(0.8, 1.2), MAX_DELAY_SECONDS)


class SendGridChannel:
    def __init__(
        self,
        sender: Sender,
        client: httpx.AsyncClient,
        *,
        api_url: str,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not sender.sendgrid_api_key and not sender.sendgrid_api_key_error:
            raise ValueError("SendGrid needs an API key (email settings or EC_SENDGRID_API_KEY)")
        self._sender = sender
        self._client = client
        self._url = api_url.rstrip("/") + "/v3/mail/send"
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._sleep = sleep

    def request_body(self, emails: Sequence[OutgoingEmail]) -> dict[str, Any]:
        first = emails[0]
        body: dict[str, Any] = {
            "from": _address(self._sender.from_email, self._sender.from_name),
            "personalizations": [
                {"to": [_address(e.recipient, e.recipient_name)], "custom_args": e.custom_args}
                for e in emails
            ],
            "categories": first.categories,
        }
        if self._sender.reply_to_email:
            body["reply_to"] = _address(self._sender.reply_to_email, self._sender.reply_to_name)
        if first.template_id:
            body["template_id"] = first.template_id
            for personalization, e in zip(body["personalizations"], emails, strict=True):
                personalization["dynamic_template_data"] = e.template_data
        else:
            # Without a SendGrid template, send what the built-in templates rendered.
            for personalization, e in zip(body["personalizations"], emails, strict=True):
                personalization["subject"] = e.subject or " "
            body["content"] = [
                {"type": "text/plain", "value": first.text or " "},
                {"type": "text/html", "value": first.html or " "},
            ]
        return body

    async def _post(self, body: dict[str, Any]) -> tuple[httpx.Response | None, str | None]:
        """The final response (or None and the transport error) after retries."""
        headers = {"Authorization": f"Bearer {self._sender.sendgrid_api_key}"}
        response: httpx.Response | None = None
        error: str | None = None
        for attempt in range(self._max_attempts):
            try:
                response = await self._client.post(self._url, json=body, headers=headers)
                error = None
            except httpx.HTTPError as exc:
                response, error = None, f"SendGrid request failed: {type(exc).__name__}"
            if response is not None and (
                response.status_code < 400 or response.status_code in PERMANENT
            ):
                return response, None
            if attempt + 1 < self._max_attempts:
                delay = retry_delay(response, attempt, self._backoff)
                logger.info(
                    "SendGrid answered %s; retrying in %.1f s",
                    response.status_code if response is not None else error,
                    delay,
                )
                await self._sleep(delay)
        return response, error

    async def send(self, emails: Sequence[OutgoingEmail]) -> AsyncIterator[list[SendOutcome]]:
        unusable_key = self._sender.sendgrid_api_key_error
        if unusable_key:
            # Nothing went to SendGrid: the items may be notified again once the key is set.
            yield [
                SendOutcome(e.notification_id, False, error=unusable_key, certainly_unsent=True)
                for e in emails
            ]
            return
        if any(not e.template_id for e in emails):
            # Rendered content differs per customer: one request per email.
            batches = [[e] for e in emails]
        else:
            batches = [
                list(emails[i : i + MAX_PERSONALIZATIONS])
                for i in range(0, len(emails), MAX_PERSONALIZATIONS)
            ]
        for batch in batches:
            response, error = await self._post(self.request_body(batch))
            if response is not None and 200 <= response.status_code < 300:
                message_id = response.headers.get("x-message-id")
                yield [SendOutcome(e.notification_id, True, message_id) for e in batch]
                continue
            certainly_unsent = response is not None and response.status_code in PERMANENT
            if response is not None:
                error = f"SendGrid {response.status_code}: {_errors(response)}"
            yield [
                SendOutcome(
                    e.notification_id, False, error=error, certainly_unsent=certainly_unsent
                )
                for e in batch
            ]


def _errors(response: httpx.Response) -> str:
    """The messages of SendGrid's error body (no request data is echoed)."""
    try:
        errors = response.json().get("errors") or []
        messages = [str(e.get("message")) for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        messages = []
    return "; ".join(messages)[:500] or response.reason_phrase

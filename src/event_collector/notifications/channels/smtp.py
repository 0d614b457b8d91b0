"""SMTP through aiosmtplib: one multipart/alternative (text + HTML) message per notification,
over one connection per batch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import aiosmtplib

from event_collector.notifications.channels import OutgoingEmail, Sender, SendOutcome

logger = logging.getLogger(__name__)


class SmtpChannel:
    def __init__(
        self,
        sender: Sender,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self._sender = sender
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout

    def _message(self, email: OutgoingEmail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = formataddr((self._sender.from_name or "", self._sender.from_email))
        message["To"] = formataddr((email.recipient_name or "", email.recipient))
        if self._sender.reply_to_email:
            message["Reply-To"] = formataddr(
                (self._sender.reply_to_name or "", self._sender.reply_to_email)
            )
        message["Subject"] = email.subject or ""
        message["Message-ID"] = make_msgid(domain=self._sender.from_email.rpartition("@")[2])
        message["X-Notification-Id"] = str(email.notification_id)
        message.set_content(email.text or "")
        if email.html:
            message.add_alternative(email.html, subtype="html")
        return message

    async def send(self, emails: Sequence[OutgoingEmail]) -> AsyncIterator[list[SendOutcome]]:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            timeout=self._timeout,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            error = f"SMTP connection to {self._host}:{self._port} failed: {exc}"
            yield [
                SendOutcome(e.notification_id, False, error=error, certainly_unsent=True)
                for e in emails
            ]
            return
        try:
            for email in emails:
                message = self._message(email)
                try:
                    await client.send_message(message)
                except aiosmtplib.SMTPResponseException as exc:
                    # The server answered: the message was not accepted.
                    outcome = SendOutcome(
                        email.notification_id,
                        False,
                        error=f"SMTP {exc.code}: {exc.message}",
                        certainly_unsent=True,
                    )
                except (aiosmtplib.SMTPException, OSError) as exc:
                    outcome = SendOutcome(email.notification_id, False, error=f"SMTP: {exc}")
                else:
                    outcome = SendOutcome(
                        email.notification_id, True, provider_message_id=message["Message-ID"]
                    )
                yield [outcome]
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()

"""Sending rendered messages: SQS SendMessageBatch, SNS PublishBatch, signed webhooks.

Every sender returns one :class:`SendResult` per message and never raises for destination
problems: the dispatcher turns results into attempts, retries and dead letters. Secrets and
message bodies never appear in results or logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
import urllib.parse
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from event_collector.delivery.messages import OutgoingMessage
from event_collector.delivery.webhook_http import Target, WebhookClient
from event_collector.kit.netpolicy import address_refusal, is_allow_listed, literal_ip
from event_collector.kit.settings import Settings
from event_collector.subscriptions.destinations import RESERVED_HEADERS

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1000
AWS_BATCH_ENTRIES = 10
AWS_BATCH_BYTES = 256 * 1024

_AWS_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "KMS.ThrottlingException",
    "KMSThrottling",
    "RequestTimeout",
}


@dataclass(slots=True)
class Destination:
    """A subscription's destination with its secret opened (lives only in memory)."""

    tenant: str
    subscription_id: str
    type: str  # SQS | SNS | WEBHOOK
    config: dict[str, Any]
    secret: str | None = field(repr=False)
    # Worked out at the first webhook send, kept for the claim's other deliveries: the static
    # header lines (custom headers, content type) or why they are unusable, and the signing key.
    webhook_headers: bytes | str | None = field(default=None, repr=False)
    signing_key: bytes | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.subscription_id)


@dataclass(slots=True)
class _PreparedURL:
    refusal: str | None
    target: Target | None  # None when refused
    expires: float


@dataclass(slots=True)
class SendResult:
    ok: bool
    latency_ms: int = 0
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None


def truncate(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def is_fifo(name_or_url: str) -> bool:
    return name_or_url.rstrip("/").endswith(".fifo")


def region_of(queue_url_or_arn: str) -> str:
    """The region named by an SQS queue URL or an SNS topic ARN (default us-east-1)."""
    if queue_url_or_arn.startswith("arn:"):
        parts = queue_url_or_arn.split(":")
        if len(parts) > 3 and parts[3]:
            return parts[3]
    host = httpx.URL(queue_url_or_arn).host if "://" in queue_url_or_arn else ""
    labels = host.split(".")
    if len(labels) >= 4 and labels[0] == "sqs" and labels[-2] == "amazonaws":
        return labels[1]
    return "us-east-1"


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError when it is not base64."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1 signature of ``{id}.{timestamp}.{body}`` (``secret``: a ``whsec_``
    secret or its :func:`signing_key`)."""
    key = signing_key(secret) if isinstance(secret, str) else secret
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _header_lines(headers: dict[str, str]) -> bytes | str:
    """``name: value\r\n`` lines, or why a header cannot be sent (the API refuses such headers;
    rows written otherwise are checked here so nothing can split the request)."""
    lines = []
    for name, value in headers.items():
        if not name or any(c in name for c in ":\r\n\0 \t") or any(c in value for c in "\r\n\0"):
            return f"the custom header {name[:64]!r} is not a valid HTTP header"
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode()


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


class Senders:
    """Shared clients: one aiobotocore client per (service, region, credentials, endpoint) and
    one keep-alive pool for every webhook (:mod:`event_collector.delivery.webhook_http`; why
    neither httpx nor aiohttp: docs/delivery.md, "Performance")."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: AioSession = get_session()
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str, str, str | None, str | None, str | None], Any] = {}
        self._client_lock = asyncio.Lock()
        self._webhooks = WebhookClient(settings.delivery_http_timeout_seconds)
        self._aws_config = AioConfig(
            connect_timeout=settings.delivery_http_timeout_seconds,
            read_timeout=settings.delivery_http_timeout_seconds,
            retries={"max_attempts": 1, "mode": "standard"},
            max_pool_connections=50,
        )
        self._resolved: dict[str, tuple[float, str | None, str | None]] = {}
        self._prepared: dict[str, _PreparedURL] = {}

    async def close(self) -> None:
        await self._stack.aclose()
        self._clients.clear()
        await self._webhooks.close()

    async def send(
        self, destination: Destination, messages: Sequence[OutgoingMessage]
    ) -> list[SendResult]:
        """Send up to one batch (10 for AWS, 1 for webhooks is typical) and time it."""
        started = time.perf_counter()
        try:
            refusal = self._server_credentials_refusal(destination)
            if refusal is not None:
                results = [SendResult(False, error=refusal, permanent=True) for _ in messages]
            elif destination.type == "SQS":
                results = await self._send_sqs(destination, messages)
            elif destination.type == "SNS":
                results = await self._send_sns(destination, messages)
            elif destination.type == "WEBHOOK":
                results = [await self._send_webhook(destination, m) for m in messages]
            else:
                results = [
                    SendResult(
                        False,
                        error=f"unknown destination type {destination.type!r}",
                        permanent=True,
                    )
                    for _ in messages
                ]
        except Exception as exc:  # a bug or an unexpected library error: retry later
            logger.exception("sending to a %s destination failed unexpectedly", destination.type)
            results = [
                SendResult(False, error=truncate(f"internal error: {exc!r}")) for _ in messages
            ]
        latency = int((time.perf_counter() - started) * 1000)
        for result in results:
            if not result.latency_ms:
                result.latency_ms = latency
        return results

    # AWS --------------------------------------------------------------------------------------

    def _server_credentials_refusal(self, destination: Destination) -> str | None:
        """Defence in depth: a stored subscription the allow-list no longer (or never) covered
        is not sent with the server's credentials (the API refuses to store one)."""
        if destination.type not in ("SQS", "SNS"):
            return None
        refusal = self._settings.aws_server_credentials.refusal(
            destination.tenant, destination.type, destination.config
        )
        return f"refused: {refusal}" if refusal else None

    async def _client(self, service: str, destination: Destination) -> Any:
        config = destination.config
        region = config.get("region") or region_of(
            str(config.get("queueUrl") or config.get("topicArn") or "")
        )
        access_key = config.get("accessKey") or None
        secret = destination.secret if access_key else None
        secret_hash = hashlib.sha256(secret.encode()).hexdigest() if secret else None
        endpoint = self._settings.aws_endpoint_url
        key = (service, region, access_key, secret_hash, endpoint)
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._client_lock:
            client = self._clients.get(key)
            if client is None:
                kwargs: dict[str, Any] = {"region_name": region, "config": self._aws_config}
                if endpoint:
                    kwargs["endpoint_url"] = endpoint
                if access_key and secret:
                    kwargs["aws_access_key_id"] = access_key
                    kwargs["aws_secret_access_key"] = secret
                client = await self._stack.enter_async_context(
                    self._session.create_client(service, **kwargs)
                )
                self._clients[key] = client
        return client

    async def _send_sqs(
        self, destination: Destination, messages: Sequence[OutgoingMessage]
    ) -> list[SendResult]:
        queue_url = str(destination.config.get("queueUrl") or "")
        entries = _aws_entries(messages, "MessageBody", fifo=is_fifo(queue_url))
        try:
            client = await self._client("sqs", destination)
            response = await client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            return [_aws_failure(exc) for _ in messages]
        return _aws_batch_results(response, len(messages))

    async def _send_sns(
        self, destination: Destination, messages: Sequence[OutgoingMessage]
    ) -> list[SendResult]:
        topic_arn = str(destination.config.get("topicArn") or "")
        entries = _aws_entries(messages, "Message", fifo=is_fifo(topic_arn))
        try:
            client = await self._client("sns", destination)
            response = await client.publish_batch(
                TopicArn=topic_arn, PublishBatchRequestEntries=entries
            )
        except (ClientError, BotoCoreError) as exc:
            return [_aws_failure(exc) for _ in messages]
        return _aws_batch_results(response, len(messages))

    # Webhooks ---------------------------------------------------------------------------------

    async def _send_webhook(self, destination: Destination, message: OutgoingMessage) -> SendResult:
        url = str(destination.config.get("url") or "")
        prepared = self._prepared.get(url)
        if prepared is None or prepared.expires <= time.monotonic():
            prepared = await self._prepare(url)
        if prepared.target is None:
            refusal = prepared.refusal or "refused"
            return SendResult(False, error=refusal, permanent=not refusal.startswith("cannot"))
        static = destination.webhook_headers
        if static is None:
            static = destination.webhook_headers = _static_headers(destination)
        if isinstance(static, str):
            return SendResult(False, error=static, permanent=True)
        body = message.body.encode()
        timestamp = int(time.time())
        headers = b"%swebhook-id: %s\r\nwebhook-timestamp: %d\r\n" % (
            static,
            message.deduplication_id.encode(),
            timestamp,
        )
        if destination.secret:
            if destination.signing_key is None:
                try:
                    destination.signing_key = signing_key(destination.secret)
                except ValueError:
                    return SendResult(
                        False, error="the webhook secret is not valid base64", permanent=True
                    )
            signature = sign(destination.signing_key, message.deduplication_id, timestamp, body)
            headers += b"webhook-signature: %s\r\n" % signature.encode()
        started = time.perf_counter()
        try:
            response = await self._webhooks.post(prepared.target, headers, body)
        except TimeoutError:
            return SendResult(False, error="timed out", latency_ms=_since(started))
        except (OSError, ValueError) as exc:
            return SendResult(
                False,
                error=truncate(f"connection failed: {type(exc).__name__}: {exc}"),
                latency_ms=_since(started),
            )
        latency = _since(started)
        status = response.status
        if 200 <= status < 300:
            return SendResult(True, latency_ms=latency, status_code=status)
        transient = status in (408, 429) or status >= 500
        return SendResult(
            False,
            latency_ms=latency,
            status_code=status,
            error=truncate(f"HTTP {status} {response.reason}".strip()),
            permanent=not transient,
            retry_after=parse_retry_after(response.retry_after),
        )

    async def _prepare(self, url: str) -> _PreparedURL:
        """Vet a webhook URL and work out where to connect; kept as long as the resolution it
        is based on (30 s), so a delivery does not re-parse and re-check its URL."""
        refusal, pinned = await self._vet(url)
        target = None if refusal else _target(httpx.URL(url), pinned)
        prepared = _PreparedURL(refusal, target, time.monotonic() + 30.0)
        resolved = self._resolved.get(httpx.URL(url).host.lower()) if not refusal else None
        if resolved is not None:
            prepared.expires = min(prepared.expires, resolved[0])
        if not (refusal and refusal.startswith("cannot")):  # transient refusals are not kept
            if len(self._prepared) > 10_000:
                self._prepared.clear()
            self._prepared[url] = prepared
        return prepared

    async def _vet(self, url: str) -> tuple[str | None, str | None]:
        """(refusal, address to connect to). The address is pinned so that the connection goes
        where the check looked (no DNS rebinding between check and connect); None means
        connect by name (an allow-listed host name, or an IP literal)."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            return "refused: the webhook URL is not valid", None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return "refused: the webhook URL must be http(s)://host/…", None
        host = parsed.host.lower()
        allowed = self._settings.webhook_allowed_hosts
        if is_allow_listed(host, None, allowed):
            return None, None  # allowed by name: connect by name
        cached = self._resolved.get(host)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1], cached[2]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host,
                parsed.port or (443 if parsed.scheme == "https" else 80),
                type=socket.SOCK_STREAM,
            )
        except OSError as exc:
            # Not cached: a resolution failure is transient.
            return f"cannot resolve {host}: {exc.strerror or exc}", None
        verdict: str | None = None
        pinned: str | None = None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            verdict = address_refusal(host, address, allowed)
            if verdict is not None:
                pinned = None
                break
            pinned = pinned or str(address)
        if verdict is None and pinned is None:
            verdict = f"cannot resolve {host}: no address"
        if literal_ip(host) is not None:
            pinned = None  # nothing to rebind
        self._resolved[host] = (now + 30.0, verdict, pinned)
        return verdict, pinned


def _target(url: httpx.URL, pinned: str | None) -> Target:
    """Connect to the vetted address when pinned; ``Host`` and TLS keep the URL's name."""
    port = url.port or (443 if url.scheme == "https" else 80)
    head = b"POST %s HTTP/1.1\r\nhost: %s\r\n" % (url.raw_path, url.netloc)
    if url.userinfo:  # credentials in the URL: HTTP Basic, as clients do
        credentials = urllib.parse.unquote_to_bytes(url.userinfo)
        head += b"authorization: Basic %s\r\n" % base64.b64encode(credentials)
    return Target(url.scheme, pinned or url.host, port, url.host if pinned else None, head)


def _static_headers(destination: Destination) -> bytes | str:
    """The header lines every request to this destination carries, or why they cannot be sent."""
    custom = destination.config.get("headers") or {}
    headers = {}
    if isinstance(custom, dict):
        headers = {
            str(k): str(v) for k, v in custom.items() if str(k).lower() not in RESERVED_HEADERS
        }
    if not any(name.lower() == "user-agent" for name in headers):  # a custom one replaces ours
        headers["user-agent"] = "event-collector-webhooks/1"
    headers["content-type"] = "application/json"
    return _header_lines(headers)


def _since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _aws_attributes(message: OutgoingMessage) -> dict[str, dict[str, str]]:
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in message.attributes.items()
    }


def _aws_failure(exc: Exception) -> SendResult:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(error.get("Message") or "")
        transient = code in _AWS_TRANSIENT_CODES or (status is not None and status >= 500)
        return SendResult(
            False,
            status_code=status,
            error=truncate(f"{code}: {message}".strip(": ")),
            permanent=not transient,
        )
    # Connection problems, timeouts, missing credentials (botocore errors carry no secrets).
    from botocore.exceptions import (
        InvalidRegionError,
        NoCredentialsError,
        ParamValidationError,
        PartialCredentialsError,
    )

    permanent = isinstance(
        exc,
        NoCredentialsError | PartialCredentialsError | ParamValidationError | InvalidRegionError,
    )
    return SendResult(False, error=truncate(f"{type(exc).__name__}: {exc}"), permanent=permanent)


def _aws_batch_results(response: dict[str, Any], count: int) -> list[SendResult]:
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    results = [SendResult(True, status_code=status) for _ in range(count)]
    for failed in response.get("Failed", []) or []:
        index = int(failed["Id"])
        code = str(failed.get("Code") or "")
        results[index] = SendResult(
            False,
            status_code=status,
            error=truncate(f"{code}: {failed.get('Message') or ''}".strip(": ")),
            permanent=bool(failed.get("SenderFault")) and code not in _AWS_TRANSIENT_CODES,
        )
    return results


def chunk_for_aws(messages: Sequence[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    """Batches of at most 10 entries and 256 KiB (a larger single message goes alone)."""
    chunks: list[list[OutgoingMessage]] = []
    current: list[OutgoingMessage] = []
    size = 0
    for message in messages:
        if current and (len(current) >= AWS_BATCH_ENTRIES or size + message.size > AWS_BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(message)
        size += message.size
    if current:
        chunks.append(current)
    return chunks


def _aws_entries(
    messages: Sequence[OutgoingMessage], body_key: str, *, fifo: bool
) -> list[dict[str, Any]]:
    """SendMessageBatch / PublishBatch entries (the two differ only in the body's key)."""
    entries = []
    for index, message in enumerate(messages):
        entry: dict[str, Any] = {
            "Id": str(index),
            body_key: message.body,
            "MessageAttributes": _aws_attributes(message),
        }
        if fifo:
            entry["MessageGroupId"] = message.ordering_key
            entry["MessageDeduplicationId"] = message.deduplication_id
        entries.append(entry)
    return entries

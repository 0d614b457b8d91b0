"""The destination rules, applied after pydantic has checked a request's shape.

:func:`normalize_destination` checks URL / ARN formats, takes the region from the URL or ARN,
reads the seed's legacy ``type: "SNS"`` + ``sqs`` block, and returns a :class:`Destination`: the
stored JSON (never the secret) plus the secret as sent (clear, masked or absent), which the
service seals or keeps.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from event_collector.kit.crypto import is_masked
from event_collector.kit.errors import ValidationFailed
from event_collector.subscriptions.schemas import (
    DESTINATION_TYPES,
    MAX_HEADERS,
    DestinationIn,
    SnsIn,
    SqsIn,
    WebhookIn,
)


@dataclass(frozen=True, slots=True)
class Destination:
    """A validated destination: what is stored in clear, and the secret as the client sent it."""

    type: str  # SQS | SNS | WEBHOOK
    config: dict[str, Any]  # the stored JSON: never the secret
    secret: str | None  # clear, masked (keep the stored one) or None (absent)

    @property
    def secret_is_masked(self) -> bool:
        return is_masked(self.secret)


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: list[str | int], msg: str) -> None:
        self.items.append({"loc": loc, "msg": msg, "type": "value_error"})

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationFailed(self.items)


_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d+$")
_AWS_ACCOUNT = re.compile(r"^\d{12}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}(\.fifo)?$")
_SQS_AWS_HOST = re.compile(r"^(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")
_TOPIC_ARN = re.compile(
    r"^arn:aws(?:-cn|-us-gov|-iso|-iso-b)?:sns:([a-z0-9-]+):(\d{12}):([^:\s]+)$"
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Set by the dispatcher (or hop-by-hop): a subscription may not override them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "upgrade",
        "expect",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_SECRET_HEADER_HINTS = ("auth", "token", "secret", "key", "password", "cookie", "signature")


def is_sensitive_header(name: str) -> bool:
    """Header values shown masked in responses (Authorization, X-Api-Key, …)."""
    lowered = name.lower()
    return any(hint in lowered for hint in _SECRET_HEADER_HINTS)


def normalize_destination(
    destination: DestinationIn, loc: list[str | int] | None = None
) -> Destination:
    """Apply the destination rules; raise :class:`ValidationFailed` with every problem found."""
    base: list[str | int] = loc or ["destination"]
    problems = _Problems()
    blocks = {
        name: getattr(destination, name)
        for name in ("sqs", "sns", "webhook")
        if getattr(destination, name) is not None
    }
    kind = destination.type
    if kind not in DESTINATION_TYPES:
        problems.add([*base, "type"], f"must be one of {', '.join(DESTINATION_TYPES)}")
        problems.raise_if_any()

    if kind == "SNS" and "sns" not in blocks and "sqs" in blocks:
        # The seed's own example: type SNS with an sqs block whose queueUrl holds a topic ARN.
        legacy = destination.sqs
        assert legacy is not None
        url = (legacy.queueUrl or "").strip()
        if not url.startswith("arn:"):
            problems.add(
                [*base, "sqs", "queueUrl"],
                "type SNS needs an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>); "
                'for an SQS queue URL use {"type": "SQS", "sqs": {"queueUrl": ...}}',
            )
            problems.raise_if_any()
        others = [name for name in blocks if name != "sqs"]
        if others:
            problems.add(base, f"type SNS takes one block; remove {', '.join(others)}")
            problems.raise_if_any()
        sns = SnsIn(
            topicArn=url,
            region=legacy.region,
            accessKey=legacy.accessKey,
            accessSecret=legacy.accessSecret,
        )
        return _sns(sns, [*base, "sqs"], problems, arn_field="queueUrl")

    expected = kind.lower()
    if expected not in blocks:
        problems.add([*base, expected], f"is required for type {kind}")
        problems.raise_if_any()
    extra = [name for name in blocks if name != expected]
    if extra:
        problems.add(
            base, f"type {kind} takes only the {expected} block; remove {', '.join(extra)}"
        )
        problems.raise_if_any()

    if kind == "SQS":
        assert destination.sqs is not None
        return _sqs(destination.sqs, [*base, "sqs"], problems)
    if kind == "SNS":
        assert destination.sns is not None
        return _sns(destination.sns, [*base, "sns"], problems, arn_field="topicArn")
    assert destination.webhook is not None
    return _webhook(destination.webhook, [*base, "webhook"], problems)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _region(
    given: str | None, derived: str | None, loc: list[str | int], problems: _Problems, what: str
) -> str | None:
    region = _clean(given)
    if region is not None:
        region = region.lower()
        if not _REGION.match(region):
            problems.add([*loc, "region"], "is not an AWS region name (e.g. eu-west-1)")
            return None
        if derived is not None and region != derived:
            problems.add([*loc, "region"], f"does not match the {what}'s region {derived!r}")
            return None
        return region
    if derived is None:
        problems.add([*loc, "region"], f"is required when the {what} does not name a region")
    return derived


def _keys(
    access_key: str | None, access_secret: str | None, loc: list[str | int], problems: _Problems
) -> tuple[str | None, str | None]:
    key, secret = _clean(access_key), _clean(access_secret)
    if key is None and secret is not None:
        problems.add(
            [*loc, "accessKey"],
            "accessKey and accessSecret go together (send both, or neither to use the "
            "server's own AWS credentials)",
        )
    if key is not None and (_CONTROL.search(key) or len(key) > 128):
        problems.add([*loc, "accessKey"], "is not a valid AWS access key id")
    return key, secret


def _sqs(block: SqsIn, loc: list[str | int], problems: _Problems) -> Destination:
    url = _clean(block.queueUrl)
    derived_region: str | None = None
    if url is None:
        problems.add([*loc, "queueUrl"], "is required")
    else:
        derived_region, message = _parse_queue_url(url)
        if message:
            problems.add([*loc, "queueUrl"], message)
    region = _region(block.region, derived_region, loc, problems, "queue URL")
    key, secret = _keys(block.accessKey, block.accessSecret, loc, problems)
    problems.raise_if_any()
    return Destination(
        type="SQS",
        config={"queueUrl": url, "region": region, "accessKey": key},
        secret=secret,
    )


def _parse_queue_url(url: str) -> tuple[str | None, str | None]:
    """(region from the host, problem) for an SQS queue URL."""
    hint = (
        "must be an SQS queue URL: https://sqs.<region>.amazonaws.com/<account>/<queue>, or "
        "http(s)://<host>/<account>/<queue> for an AWS-compatible endpoint"
    )
    if url.startswith("arn:"):
        return None, f"{hint}; an SNS topic ARN needs type SNS"
    if _CONTROL.search(url) or " " in url:
        return None, hint
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None, hint
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None, hint
    if parts.username is not None or parts.password is not None:
        return None, f"{hint} (without credentials in the URL)"
    segments = [s for s in parts.path.split("/")]
    if len(segments) != 3 or segments[0] != "" or not segments[1] or not segments[2]:
        return None, hint
    account, name = segments[1], segments[2]
    if not _QUEUE_NAME.match(name):
        return None, f"{hint}; the queue name has 1-80 letters, digits, - or _ (and .fifo)"
    match = _SQS_AWS_HOST.match(parts.hostname.lower())
    if match:
        if not _AWS_ACCOUNT.match(account):
            return None, f"{hint}; the account is 12 digits"
        return (match.group(1) or match.group(2)), None
    return None, None


def _sns(block: SnsIn, loc: list[str | int], problems: _Problems, *, arn_field: str) -> Destination:
    arn = _clean(block.topicArn)
    derived_region: str | None = None
    if arn is None:
        problems.add([*loc, arn_field], "is required")
    else:
        match = _TOPIC_ARN.match(arn)
        if match is None or not _TOPIC_NAME.match(match.group(3)):
            problems.add(
                [*loc, arn_field],
                "must be an SNS topic ARN: arn:aws:sns:<region>:<12-digit account>:<topic>",
            )
        else:
            derived_region = match.group(1)
    region = _region(block.region, derived_region, loc, problems, "topic ARN")
    key, secret = _keys(block.accessKey, block.accessSecret, loc, problems)
    problems.raise_if_any()
    return Destination(
        type="SNS",
        config={"topicArn": arn, "region": region, "accessKey": key},
        secret=secret,
    )


def _webhook(block: WebhookIn, loc: list[str | int], problems: _Problems) -> Destination:
    url = _clean(block.url)
    if url is None:
        problems.add([*loc, "url"], "is required")
    else:
        message = _check_webhook_url(url)
        if message:
            problems.add([*loc, "url"], message)
    secret = _clean(block.secret)
    if secret is not None and not is_masked(secret):
        message = check_webhook_secret(secret)
        if message:
            problems.add([*loc, "secret"], message)
    headers: dict[str, str] = {}
    raw_headers = block.headers or {}
    if len(raw_headers) > MAX_HEADERS:
        problems.add([*loc, "headers"], f"at most {MAX_HEADERS} headers")
    seen: set[str] = set()
    for name, value in raw_headers.items():
        lowered = name.strip().lower()
        if not _HEADER_NAME.match(name.strip()):
            problems.add([*loc, "headers", name], "is not a valid HTTP header name")
        elif lowered in RESERVED_HEADERS:
            problems.add([*loc, "headers", name], "is set by the dispatcher and cannot be changed")
        elif lowered in seen:
            problems.add([*loc, "headers", name], "is given twice (header names ignore case)")
        elif value is None or _CONTROL.search(value):
            problems.add([*loc, "headers", name], "must be a string without control characters")
        else:
            seen.add(lowered)
            headers[name.strip()] = value
    problems.raise_if_any()
    return Destination(type="WEBHOOK", config={"url": url, "headers": headers}, secret=secret)


def _check_webhook_url(url: str) -> str | None:
    hint = "must be an http(s) URL"
    if _CONTROL.search(url) or " " in url:
        return hint
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return hint
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return hint
    if parts.username is not None or parts.password is not None:
        return f"{hint} without credentials (put them in headers, e.g. Authorization)"
    if parts.fragment:
        return f"{hint} without a #fragment"
    return None


WEBHOOK_SECRET_PREFIX = "whsec_"


def check_webhook_secret(secret: str) -> str | None:
    """A problem with a Standard Webhooks secret (``whsec_<base64>``), or None."""
    message = "must be a Standard Webhooks secret: whsec_ followed by base64 of 16 to 64 bytes"
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return message
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return message
    if not 16 <= len(raw) <= 64:
        return message
    return None

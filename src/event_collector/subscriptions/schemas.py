"""Subscription shapes (the seed's camelCase) and the destination rules.

Pydantic checks the *shape* of a request (types, unknown keys inside destination blocks);
:func:`normalize_destination` then applies the destination rules (URL / ARN formats, region from
the URL or ARN, the seed's legacy ``type: "SNS"`` + ``sqs`` block) and returns a
:class:`Destination`: the stored JSON (never the secret) plus the secret as sent (clear, masked or
absent), which the service seals or keeps.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)

from event_collector.events.schemas import ENTITY_TYPES
from event_collector.kit.crypto import is_masked
from event_collector.kit.errors import ValidationFailed

# The seed's list, the other entity types events can carry, and NOTIFICATION (DESIGN §6.5).
SUBSCRIPTION_ENTITY_TYPES: tuple[str, ...] = tuple(sorted(ENTITY_TYPES | {"NOTIFICATION"}))
_ENTITY_TYPE_SET = frozenset(SUBSCRIPTION_ENTITY_TYPES)

DESTINATION_TYPES = ("SQS", "SNS", "WEBHOOK")
MAX_HEADERS = 20


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _check_entity_type(value: str) -> str:
    if value not in _ENTITY_TYPE_SET:
        raise ValueError(f"must be one of {', '.join(SUBSCRIPTION_ENTITY_TYPES)}")
    return value


# Ids travel in URL paths (/event-subscription/{id}): keep out what would break a path.
SubscriptionId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x20/?#%\\\x7f]+$")
]
EntityType = Annotated[
    str,
    BeforeValidator(_upper),
    AfterValidator(_check_entity_type),
    Field(json_schema_extra={"enum": list(SUBSCRIPTION_ENTITY_TYPES)}),
]
Text = Annotated[str | None, StringConstraints(max_length=2048)]


class SqsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queueUrl: Text = Field(
        default=None,
        description="https://sqs.<region>.amazonaws.com/<account>/<queue> (or an AWS-compatible "
        "endpoint's http(s)://host/<account>/<queue>). Legacy: an SNS topic ARN with type SNS.",
    )
    region: Text = Field(default=None, description="Defaults to the region in the URL.")
    accessKey: Text = None
    accessSecret: Text = Field(
        default=None, description="Write-only: shown masked; send the masked value to keep it."
    )


class SnsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topicArn: Text = Field(default=None, description="arn:aws:sns:<region>:<account>:<topic>")
    region: Text = Field(default=None, description="Defaults to the region in the ARN.")
    accessKey: Text = None
    accessSecret: Text = Field(
        default=None, description="Write-only: shown masked; send the masked value to keep it."
    )


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Text = Field(default=None, description="http(s) URL the events are POSTed to.")
    secret: Text = Field(
        default=None,
        description="Standard Webhooks signing secret `whsec_<base64>`. Generated when absent "
        "and shown in full once, in the create response; masked afterwards.",
    )
    headers: dict[Annotated[str, StringConstraints(max_length=256)], Text] | None = Field(
        default=None, description="Extra request headers (name → value)."
    )


# What normalize_destination accepts, stated for the OpenAPI document (a client, or a schema
# fuzzer, can build a valid destination from it). Patterns describe the common, fully checked
# forms: an AWS queue URL or topic ARN (region taken from it), a public https webhook; the
# server also accepts AWS-compatible queue endpoints with an explicit region, which a pattern
# cannot tie to the URL.
# A blank webhook secret is absent (one is generated). A masked one ("********abcd", as a GET
# shows it) keeps the stored secret on an update: not described, a create refuses it.
_BLANK = r"[ ]*"
_KEYS: dict[str, Any] = {
    "oneOf": [
        {
            "title": "the server's own AWS credentials",
            "properties": {"accessKey": {"type": "null"}, "accessSecret": {"type": "null"}},
        },
        {
            "title": "the subscription's AWS credentials",
            "required": ["accessKey", "accessSecret"],
            "properties": {
                "accessKey": {"type": "string", "pattern": r"^[A-Z0-9]{16,128}$"},
                "accessSecret": {"type": "string", "pattern": r"^[A-Za-z0-9/+]{40}$"},
            },
        },
    ]
}
_SQS_URL = r"^https://sqs\.[a-z]{2}-[a-z]{4,9}-[1-9]\.amazonaws\.com/[0-9]{12}/[A-Za-z0-9_-]{1,80}$"
_SNS_ARN = r"^arn:aws:sns:[a-z]{2}-[a-z]{4,9}-[1-9]:[0-9]{12}:[A-Za-z0-9_-]{1,256}$"
_WEBHOOK_URL = r"^https://[a-z][a-z0-9-]{0,30}(\.[a-z][a-z0-9-]{0,30}){0,3}\.[a-z]{2,6}(/[A-Za-z0-9._~-]{0,40}){0,4}$"
_WEBHOOK_SECRET = (
    r"^(?:whsec_(?:[A-Za-z0-9+/]{4}){6,20}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
    rf"|{_BLANK})$"
)


def _aws_block(arn_or_url: str, pattern: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [arn_or_url],
        "properties": {
            arn_or_url: {"type": "string", "pattern": pattern},
            "region": {"type": "null", "description": "Taken from the URL or ARN."},
        },
        **_KEYS,
    }


def _variant(kind: str, block: str, block_schema: dict[str, Any]) -> dict[str, Any]:
    others = {name: {"type": "null"} for name in ("sqs", "sns", "webhook") if name != block}
    return {
        "title": f"{kind} ({block} block)",
        "required": ["type", block],
        "properties": {"type": {"const": kind}, block: block_schema, **others},
    }


DESTINATION_VARIANTS: list[dict[str, Any]] = [
    _variant("SQS", "sqs", _aws_block("queueUrl", _SQS_URL)),
    _variant("SNS", "sns", _aws_block("topicArn", _SNS_ARN)),
    # The seed's own example: type SNS with the topic ARN in an sqs block's queueUrl.
    _variant("SNS", "sqs", _aws_block("queueUrl", _SNS_ARN)),
    _variant(
        "WEBHOOK",
        "webhook",
        {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "pattern": _WEBHOOK_URL},
                "secret": {"type": ["string", "null"], "pattern": _WEBHOOK_SECRET},
                "headers": {
                    "type": ["object", "null"],
                    "maxProperties": MAX_HEADERS,
                    "propertyNames": {"pattern": r"^x-[a-z0-9-]{1,40}$"},
                    "additionalProperties": {"type": "string", "pattern": r"^[ -~]{0,200}$"},
                },
            },
        },
    ),
]


def _destination_variants(schema: dict[str, Any]) -> None:
    schema["oneOf"] = DESTINATION_VARIANTS


class DestinationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_destination_variants)

    type: Annotated[
        str,
        BeforeValidator(_upper),
        Field(json_schema_extra={"enum": list(DESTINATION_TYPES)}),
    ]
    sqs: SqsIn | None = None
    sns: SnsIn | None = None
    webhook: WebhookIn | None = None


class SubscriptionIn(BaseModel):
    """A subscription as a client creates it (POST)."""

    model_config = ConfigDict(extra="ignore")

    id: SubscriptionId | None = Field(default=None, description="Generated (UUID) when absent.")
    active: StrictBool = True
    entityType: EntityType
    subscribeCreate: StrictBool = True
    subscribeChange: StrictBool = True
    subscribeDelete: StrictBool = True
    destination: DestinationIn


class SubscriptionUpdate(BaseModel):
    """A PUT body: the fields present replace the stored ones, absent fields are kept.

    Read-only fields a GET returns (createdAt …) are ignored, so a GET body can be sent back.
    """

    model_config = ConfigDict(extra="ignore")

    id: SubscriptionId | None = Field(
        default=None,
        description="Read-only: the path's id; a body may carry it back unchanged, a different "
        "one answers 400.",
        json_schema_extra={"readOnly": True},
    )
    active: StrictBool | None = None
    entityType: EntityType | None = None
    subscribeCreate: StrictBool | None = None
    subscribeChange: StrictBool | None = None
    subscribeDelete: StrictBool | None = None
    destination: DestinationIn | None = None


class SubscriptionUpdateById(SubscriptionUpdate):
    """A PUT body that names the subscription it updates (PUT /event-subscription)."""

    id: SubscriptionId = Field(description="The subscription to update.")


# --- responses (documentation; the endpoints render dicts) ---------------------------------


class SqsOut(BaseModel):
    queueUrl: str
    region: str
    accessKey: str | None
    accessSecret: str | None = Field(description="Masked (`********abcd`).")


class SnsOut(BaseModel):
    topicArn: str
    region: str
    accessKey: str | None
    accessSecret: str | None = Field(description="Masked (`********abcd`).")


class WebhookOut(BaseModel):
    url: str
    secret: str = Field(
        description="Masked, except in the response that generated it (create, or a PUT that "
        "switched the destination to WEBHOOK without a secret)."
    )
    headers: dict[str, str]


class DestinationOut(BaseModel):
    type: str
    sqs: SqsOut | None = None
    sns: SnsOut | None = None
    webhook: WebhookOut | None = None


class SubscriptionOut(BaseModel):
    id: str
    active: bool
    entityType: str
    subscribeCreate: bool
    subscribeChange: bool
    subscribeDelete: bool
    destination: DestinationOut
    createdAt: str = Field(description="Read-only.")
    updatedAt: str = Field(description="Read-only.")
    deactivatedAt: str | None = Field(description="Read-only: when it was last deactivated.")
    deactivatedReason: str | None = Field(description="Read-only: why (API or auto-disable).")


class AcceptedOut(BaseModel):
    """The seed's deactivate answer."""

    body: dict[str, Any]
    statusCode: str
    statusCodeValue: int


# --- destination rules ----------------------------------------------------------------------


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

"""Subscription shapes (the seed's camelCase), as requests and answers carry them.

Pydantic checks the *shape* of a request (types, unknown keys inside destination blocks);
``subscriptions.destinations.normalize_destination`` then applies the destination rules.
"""

from __future__ import annotations

from typing import Annotated, Any

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

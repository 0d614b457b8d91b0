"""Event shapes: the seed's snake_case request body and the stored event the API returns.

Validation runs from raw bytes (``TypeAdapter.validate_json``) on the hot ingest path: no
intermediate ``dict`` and no per-request dependency machinery.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from event_collector.kit.nul import NO_NUL_PATTERN, NoNul


class _CaseInsensitive(StrEnum):
    """Accepts any case and surrounding blanks ("order ", "Create"). pydantic-core validates the
    canonical spelling itself and calls ``_missing_`` only for the rest, so the common case costs
    no Python call per field and event."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            return cls.__members__.get(value.strip().upper())
        return None


class EventType(_CaseInsensitive):
    ORDER = "ORDER"
    ORDER_ENTRY = "ORDER_ENTRY"
    CUSTOMER = "CUSTOMER"
    ADDRESS = "ADDRESS"
    PRODUCT = "PRODUCT"
    VARIANT_PRODUCT = "VARIANT_PRODUCT"
    INVENTORY_LEVEL = "INVENTORY_LEVEL"
    INVENTORY_LOCATION = "INVENTORY_LOCATION"
    INVENTORY_ITEM = "INVENTORY_ITEM"
    STORE = "STORE"
    MERCHANT = "MERCHANT"
    WISHLIST = "WISHLIST"
    WISHLIST_ITEM = "WISHLIST_ITEM"
    OTHER = "OTHER"
    EVENT = "EVENT"
    PRICE = "PRICE"
    ENTITY_EVENT = "ENTITY_EVENT"
    FAULT = "FAULT"
    SYSTEM = "SYSTEM"
    WARNING = "WARNING"


class EventSource(_CaseInsensitive):
    SYSTEM = "SYSTEM"
    CONNECTOR = "CONNECTOR"
    APPLICATION = "APPLICATION"
    SERVERLESS = "SERVERLESS"


class Operation(_CaseInsensitive):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    BULK_CREATE = "BULK_CREATE"
    BULK_UPDATE = "BULK_UPDATE"
    READ = "READ"


# The event types that name an entity: what routing and the read model key on.
ENTITY_TYPES: frozenset[str] = frozenset(
    {
        "ORDER",
        "ORDER_ENTRY",
        "CUSTOMER",
        "ADDRESS",
        "PRODUCT",
        "VARIANT_PRODUCT",
        "INVENTORY_LEVEL",
        "INVENTORY_LOCATION",
        "INVENTORY_ITEM",
        "STORE",
        "MERCHANT",
        "WISHLIST",
        "WISHLIST_ITEM",
        "PRICE",
    }
)


def derive_entity_type(event_type: str, entity_name: str | None) -> str | None:
    """``event_type`` when it names an entity, else a matching ``entity_name``, else none."""
    if event_type in ENTITY_TYPES:
        return event_type
    if entity_name:
        candidate = entity_name.strip().upper().replace("-", "_").replace(" ", "_")
        if candidate in ENTITY_TYPES:
            return candidate
    return None


# Ids travel in URL paths (GET /events/{id}): keep out what would break or disguise a path.
EventId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x20/?#%\\\x7f]+$")
]
# No NUL in stored text (PostgreSQL refuses it; see kit.nul): a 400, on both databases.
ShortText = Annotated[str, StringConstraints(max_length=255), NoNul]
# Written out: pydantic would turn the key rule into patternProperties, which admits any key.
KeyAttributes = Annotated[
    dict[ShortText, Annotated[str, NoNul]],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"maxLength": 255, "pattern": NO_NUL_PATTERN},
            "additionalProperties": {"type": "string", "pattern": NO_NUL_PATTERN},
        }
    ),
]


# Standard alphabet, padding optional (what _decode_base64_field accepts, blanks aside).
BASE64_JSON: dict[str, Any] = {
    "contentEncoding": "base64",
    "contentMediaType": "application/json",
    "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$",
}


def _decode_base64_field(value: str | None, info: ValidationInfo) -> str | None:
    if value is None or value == "":
        return value or None
    limit = (info.context or {}).get("max_decoded_payload_bytes")
    compact = value.strip()
    if limit is not None and (len(compact) * 3) // 4 > limit + 2:
        raise PydanticCustomError(
            "payload_too_large",
            "decoded size exceeds the limit of {limit} bytes",
            {"limit": limit},
        )
    try:
        padded = compact + "=" * (-len(compact) % 4)
        decoded = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError(
            "base64", "is not valid base64 (standard alphabet, padding optional)"
        ) from None
    if limit is not None and len(decoded) > limit:
        raise PydanticCustomError(
            "payload_too_large",
            "decoded size exceeds the limit of {limit} bytes",
            {"limit": limit},
        )
    return compact


class EventPayloadIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    base64_encoded_payload_json: str | None = Field(
        default=None,
        description="Base64 of the entity JSON (not encrypted, despite the seed).",
        json_schema_extra=BASE64_JSON,
    )
    base64_encoded_fault_json: str | None = Field(
        default=None,
        description="Base64 of the fault/error JSON, for fault reports.",
        json_schema_extra=BASE64_JSON,
    )
    entity_id: ShortText | None = None
    key_attributes: KeyAttributes | None = Field(
        default=None, description="Customer-defined string attributes (e.g. correlationId)."
    )
    operation: Operation

    _check_base64 = field_validator(
        "base64_encoded_payload_json", "base64_encoded_fault_json", mode="after"
    )(_decode_base64_field)


class EventIn(BaseModel):
    """An event as a client posts it (the seed's representation)."""

    model_config = ConfigDict(extra="ignore")

    id: EventId | None = Field(default=None, description="Unique per tenant; generated if absent.")
    entity_id: ShortText | None = None
    entity_name: ShortText | None = None
    event_type: EventType
    event_source: EventSource | None = None
    event_payload: EventPayloadIn


class EventPayloadOut(BaseModel):
    base64_encoded_payload_json: str | None
    base64_encoded_fault_json: str | None
    entity_id: str | None
    key_attributes: dict[str, str] | None
    operation: Operation


class EventOut(BaseModel):
    """An event as stored: the posted fields plus what the server adds."""

    id: str
    entity_id: str | None
    entity_name: str | None
    event_type: EventType
    event_source: EventSource | None
    event_payload: EventPayloadOut
    tenant: str = Field(description="Read-only: the tenant that owns the event.")
    entity_type: str | None = Field(
        description="Read-only: the entity type used for routing, or null when none applies."
    )
    received_at: str = Field(description="Read-only: arrival time, ISO-8601 UTC.")


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str = Field(
        description="Pass as `cursor` to get the next page; on every page, the last one too "
        "(where a client tailing the feed polls for new events)."
    )
    has_more: bool = Field(description="More events match now: fetch the next page at once.")


class BatchItemResult(BaseModel):
    index: int
    id: str | None
    status: str = Field(description="created | duplicate | conflict | invalid")
    error: str | None = None
    errors: list[dict[str, Any]] | None = None


class BatchResult(BaseModel):
    results: list[BatchItemResult]
    created: int
    duplicate: int
    conflict: int
    invalid: int

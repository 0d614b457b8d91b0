"""The event as it moves through ingestion: validated, normalised, hashed, stored."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cached_property
from typing import Any

from pydantic_core import from_json, to_json

from event_collector.events.schemas import EventIn, derive_entity_type
from event_collector.kit.ids import uuid7
from event_collector.kit.timefmt import isoformat_z


@dataclass
class EventData:
    """The stored fields of an event, as the ``event`` table holds them (less ``seq``)."""

    tenant: str
    id: str
    entity_id: str | None
    entity_name: str | None
    event_type: str
    event_source: str | None
    operation: str
    entity_type: str | None
    payload_entity_id: str | None
    key_attributes: dict[str, str] | None
    payload_b64: str | None
    fault_b64: str | None
    content_hash: str
    received_at: datetime

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _DATA_FIELDS}


@dataclass
class NewEvent(EventData):
    """A validated event about to be stored."""

    @classmethod
    def from_input(cls, tenant: str, event: EventIn, received_at: datetime) -> NewEvent:
        payload = event.event_payload
        entity_id = event.entity_id if event.entity_id is not None else payload.entity_id
        payload_entity_id = payload.entity_id if payload.entity_id is not None else entity_id
        # _value_ (a plain attribute) rather than .value (a descriptor): this runs per event.
        event_type = event.event_type._value_
        fields = {
            "entity_id": entity_id,
            "entity_name": event.entity_name,
            "event_type": event_type,
            "event_source": event.event_source._value_ if event.event_source else None,
            "operation": payload.operation._value_,
            "payload_entity_id": payload_entity_id,
            # Sorted, so a re-post listing the same attributes in another order is identical.
            "key_attributes": (
                dict(sorted(payload.key_attributes.items()))
                if payload.key_attributes is not None
                else None
            ),
            "payload_b64": payload.base64_encoded_payload_json,
            "fault_b64": payload.base64_encoded_fault_json,
        }
        content_hash = hashlib.sha256(to_json(fields)).hexdigest()
        return cls(
            tenant=tenant,
            # Time-ordered: cheaper to index than random ids (kit.ids).
            id=event.id or str(uuid7()),
            entity_type=derive_entity_type(event_type, event.entity_name),
            content_hash=content_hash,
            received_at=received_at,
            **fields,  # type: ignore[arg-type]
        )


@dataclass
class StoredEvent(EventData):
    """An event read back from storage (or just written): what the API and hooks see."""

    seq: int

    @classmethod
    def from_row(cls, row: Any) -> StoredEvent:
        mapping = row._mapping if hasattr(row, "_mapping") else row
        return cls(**{name: mapping[name] for name in _STORED_FIELDS})

    @classmethod
    def from_new(cls, event: NewEvent, seq: int) -> StoredEvent:
        # A NewEvent's __dict__ is exactly its fields (no cached properties): much cheaper than
        # row() for each event of a group.
        return cls(seq=seq, **event.__dict__)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entity_id": self.entity_id,
            "entity_name": self.entity_name,
            "event_type": self.event_type,
            "event_source": self.event_source,
            "event_payload": {
                "base64_encoded_payload_json": self.payload_b64,
                "base64_encoded_fault_json": self.fault_b64,
                "entity_id": self.payload_entity_id,
                "key_attributes": self.key_attributes,
                "operation": self.operation,
            },
            "tenant": self.tenant,
            "entity_type": self.entity_type,
            "received_at": isoformat_z(self.received_at),
        }

    @cached_property
    def payload(self) -> Any:
        """The decoded payload JSON, or None when absent or not JSON."""
        return _decode_json(self.payload_b64)


_DATA_FIELDS = tuple(f.name for f in fields(EventData))
_STORED_FIELDS = tuple(f.name for f in fields(StoredEvent))


def _decode_json(b64: str | None) -> Any:
    if not b64:
        return None
    try:
        # pydantic-core's parser: a third of json.loads's cost on bytes (every delivered event's
        # body and the read model decode payloads), the same values, ValueError when invalid.
        return from_json(base64.b64decode(b64 + "=" * (-len(b64) % 4)))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class EventKinds:
    """Events by what they are about: an entity type in ``entity_types`` and an operation in
    ``operations``, unless the event type is in ``except_event_types``. Another domain names the
    events it depends on this way (the read model: the events a rebuild replays), so that the
    events domain can keep them without knowing why."""

    entity_types: frozenset[str]
    operations: frozenset[str]
    except_event_types: frozenset[str]

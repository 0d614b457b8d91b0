"""NUL characters (U+0000): refused in identifiers, filters and URLs, on both databases.

PostgreSQL cannot store NUL in text (or ``\\u0000`` in JSONB) and answers with an error that
was a 500 (or a 503 that clients retry forever); SQLite stores it. So that both backends behave
the same, a NUL is refused with a 400 before anything reaches the database: in the URL (path
ids, query filters) by :func:`refuse_nul_in_url`, in request fields by :data:`NoNul`. A NUL inside
an event's payload is not refused: the event is stored (as base64 text) and the read model
records a problem instead (``read_model.apply.hook``).
"""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema
from starlette.requests import Request

from event_collector.kit.errors import BadRequest

NUL = "\x00"


def refuse_nul(value: Any) -> Any:
    if isinstance(value, str) and NUL in value:
        raise PydanticCustomError("nul_character", "must not contain a NUL character (\\u0000)")
    return value


class _NoNul:
    """Validates like ``AfterValidator(refuse_nul)`` and says so in the OpenAPI document (a
    pattern, unless the field has its own, which then excludes NUL itself)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(refuse_nul, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if json_schema.get("type") == "string":
            json_schema.setdefault("pattern", NO_NUL_PATTERN)
        return json_schema


NO_NUL_PATTERN = "^[^\\u0000]*$"
NoNul = _NoNul()
"""``Annotated[str, NoNul]``: a request field that must not hold a NUL."""


def refuse_nul_in_url(request: Request) -> None:
    """An app-wide dependency: 400 for a request whose path or query string encodes a NUL.

    A NUL can reach a handler only percent-encoded (HTTP parsers refuse a raw one in the
    request line), so looking for ``%00`` in the raw bytes finds every one, without decoding.
    (The raw ingest routes take no ids or filters from the URL.)
    """
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    if b"%00" in raw_path or b"%00" in scope.get("query_string", b"") or NUL in scope["path"]:
        raise BadRequest("the URL must not contain a NUL character (%00)")

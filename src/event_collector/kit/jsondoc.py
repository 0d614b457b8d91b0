"""Decoded JSON documents a client chose: walked without recursion, checked before storing.

Free-form JSON (a job's ``job_parameters``) reaches a JSON column and is serialised again for
every answer; a document nested hundreds of levels deep failed there (a 500), and a NUL in any
key or string is refused by PostgreSQL (``kit.nul``). :data:`FreeFormJson` refuses both with a
400. Decoded event payloads are not refused (the event is kept as sent): the read model checks
them with :func:`contains_nul` and records a problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from event_collector.kit.nul import NUL

MAX_DEPTH = 32


def walk(document: Any) -> Iterator[tuple[Any, int]]:
    """Every value of a document (object keys too) with its depth (the document is at 1).

    A loop, not recursion: the depth is the sender's choice."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        yield value, depth
        if isinstance(value, dict):
            for key, item in value.items():
                yield key, depth + 1
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def contains_nul(document: Any) -> bool:
    """Whether a decoded JSON document holds a NUL in any string, key or value."""
    return any(isinstance(value, str) and NUL in value for value, _ in walk(document))


def check_free_form(document: Any) -> Any:
    for value, depth in walk(document):
        if depth > MAX_DEPTH:
            raise PydanticCustomError(
                "json_too_deep", "is nested more than {limit} levels deep", {"limit": MAX_DEPTH}
            )
        if isinstance(value, str) and NUL in value:
            raise PydanticCustomError(
                "nul_character", "must not contain a NUL character (\\u0000) in any key or value"
            )
    return document


FreeFormJson = AfterValidator(check_free_form)
"""``Annotated[dict[str, Any], FreeFormJson]``: client JSON stored as it came."""

"""Validation problems in the client's language.

Pydantic's messages are written for Python developers: "String should match pattern
'^[^\\x00-…'", "Value error, …", "Input should be a valid integer, unable to parse string as an
integer". A client needs the field and what it accepts. :func:`readable_problems` turns pydantic's
error dicts into ``{"loc": [...], "msg": "...", "type": "..."}`` items whose ``msg`` says that,
never echoing the input (it may be huge, binary or a secret) nor a regular expression.

A pattern a schema declares gets its sentence here (:data:`PATTERN_MEANINGS`); a test checks that
every pattern in the OpenAPI document has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Every `pattern=` pydantic or FastAPI checks (tests/test_api_conformance.py finds them in the
# source), and what it means for the client.
PATTERN_MEANINGS: dict[str, str] = {
    r"^[^\x00-\x20/?#%\\\x7f]+$": (
        "must not be empty nor contain spaces, control characters, /, ?, #, % or \\"
    ),
    r"^[^\x00-\x1f\x7f]*$": "must not contain control characters",
    r"^[^@\s\x85\ufeff]+@[^@\s\x85\ufeff]+\.[^@\s\x85\ufeff]+$": (
        "must be an email address (name@example.com)"
    ),
    "^(pending|sending|sent|failed|skipped)$": (
        "must be one of pending, sending, sent, failed, skipped"
    ),
}


def _expected(ctx: Mapping[str, Any]) -> str:
    expected = str(ctx.get("expected", ""))
    return expected.replace("'", "")


def _plural(count: Any, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _message(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    msg = str(error.get("msg", "is invalid"))
    if kind == "value_error" or kind == "assertion_error":
        # Our own validators' sentences, behind pydantic's "Value error, " prefix.
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        return msg
    if kind == "string_pattern_mismatch":
        return PATTERN_MEANINGS.get(str(ctx.get("pattern")), "is not in the accepted format")
    simple = {
        "missing": "is required",
        "extra_forbidden": "is not a known field",
        "json_invalid": "is not valid JSON",
        "json_type": "must be a JSON document",
        "string_type": "must be a string",
        "string_unicode": "must be valid UTF-8 text",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "decimal_type": "must be a decimal number",
        "decimal_parsing": "must be a decimal number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "dict_type": "must be a JSON object",
        "model_type": "must be a JSON object",
        "model_attributes_type": "must be a JSON object",
        "list_type": "must be a JSON array",
        "none_required": "must be null",
        "datetime_type": "must be an ISO-8601 timestamp (2024-05-01T00:00:00Z)",
        "datetime_parsing": "must be an ISO-8601 timestamp (2024-05-01T00:00:00Z)",
        "datetime_from_date_parsing": "must be an ISO-8601 timestamp (2024-05-01T00:00:00Z)",
        "uuid_type": "must be a UUID",
        "uuid_parsing": "must be a UUID",
        "url_parsing": "must be a URL",
        "url_scheme": "must be a URL with an accepted scheme",
        "recursion_loop": "is nested too deeply",
    }
    if kind in simple:
        return simple[kind]
    if kind == "string_too_short":
        minimum = ctx.get("min_length", 1)
        if minimum == 1:
            return "must not be empty"
        return f"must have at least {_plural(minimum, 'character')}"
    if kind == "string_too_long":
        return f"must have at most {_plural(ctx.get('max_length'), 'character')}"
    if kind == "too_short":
        return f"must have at least {_plural(ctx.get('min_length'), 'item')}"
    if kind == "too_long":
        return f"must have at most {_plural(ctx.get('max_length'), 'item')}"
    bounds = {
        "greater_than": "must be greater than {gt}",
        "greater_than_equal": "must be at least {ge}",
        "less_than": "must be less than {lt}",
        "less_than_equal": "must be at most {le}",
        "multiple_of": "must be a multiple of {multiple_of}",
    }
    if kind in bounds:
        return bounds[kind].format(
            **{k: ctx.get(k) for k in ("gt", "ge", "lt", "le", "multiple_of")}
        )
    if kind in ("enum", "literal_error"):
        return f"must be one of {_expected(ctx)}"
    # Anything else ("Input should be a valid X"), without pydantic's phrasing.
    return msg.replace("Input should be", "must be")


def readable_problems(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic error dicts as the API shows them: a non-empty ``loc`` naming the field (the
    request part ``body`` is dropped when a field follows it; a problem with the whole body is
    located at ``["body"]``), and a ``msg`` in plain words."""
    problems = []
    for error in errors:
        raw: Sequence[Any] = error.get("loc", ()) or ()
        loc: list[str | int] = [
            part if isinstance(part, int) else str(part)
            for part in raw
            # Pydantic names the validator of a union member it tried (`function-after[…]`):
            # not a field the client sent.
            if not (isinstance(part, str) and "[" in part and not part.startswith("["))
        ]
        if len(loc) > 1 and loc[0] == "body":
            loc = loc[1:]
        if not loc:
            loc = ["body"]
        problems.append({"loc": loc, "msg": _message(error), "type": error.get("type")})
    return problems


# A timestamp parameter as documented: RFC 3339, in the years no time zone pushes past the
# calendar's edge (the server refuses those with 400).
TIMESTAMP_SCHEMA: dict[str, Any] = {"format": "date-time", "pattern": r"^[12][0-9]{3}-"}


def any_case_pattern(values: Iterable[str]) -> str:
    """A JSON Schema pattern (ECMA and Python alike) matching any of ``values`` in any letter
    case, for parameters the server upper-cases before checking them."""
    alternatives = (
        "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in value)
        for value in sorted(values)
    )
    return f"^(?:{'|'.join(alternatives)})$"

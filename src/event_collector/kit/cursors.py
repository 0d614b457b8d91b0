"""Page cursors: opaque to clients, parsed strictly here.

A cursor is the URL-safe base64 (unpadded) of a short text that names a position: a prefix
letter and a sequence number (``s42``), or a timestamp and an id. A client can send anything,
so every decoder goes through :func:`decode_cursor` and :func:`parse_seq`: a cursor that is not
base64 of printable text, or whose number does not fit the database's signed 64-bit integers
(both drivers raise OverflowError on one beyond that, which was a 500), is a 400.
"""

from __future__ import annotations

import base64
import binascii

from event_collector.kit.errors import BadRequest

MAX_SEQ = 2**63 - 1  # BIGINT on PostgreSQL, INTEGER on SQLite
_MAX_SEQ_DIGITS = len(str(MAX_SEQ))


def invalid_cursor(next_field: str = "next_cursor") -> BadRequest:
    """The error for a cursor this server did not issue (a plain BadRequest to clients)."""
    return BadRequest(f"cursor is not valid; pass the {next_field} of a previous page")


def encode_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, next_field: str = "next_cursor") -> str:
    """The text inside a cursor; a 400 unless it is base64 of printable text."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor(next_field) from None
    # No control characters (NUL above all: PostgreSQL refuses it in text parameters).
    if not text.isprintable():
        raise invalid_cursor(next_field)
    return text


def parse_seq(text: str) -> int:
    """A sequence number or row id: ASCII digits only, 0 … 2**63-1; ValueError otherwise.

    Stricter than ``int()``, which also takes signs, blanks, underscores and non-ASCII digits.
    """
    if not text or len(text) > _MAX_SEQ_DIGITS or not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a sequence number: {text[:40]!r}")
    value = int(text)
    if value > MAX_SEQ:
        raise ValueError(f"sequence number out of range: {text!r}")
    return value


def encode_seq_cursor(prefix: str, seq: int) -> str:
    return encode_cursor(f"{prefix}{seq}")


def decode_seq_cursor(cursor: str, prefix: str, *, next_field: str = "next_cursor") -> int:
    """The number of a ``<prefix><seq>`` cursor (see :func:`encode_seq_cursor`)."""
    text = decode_cursor(cursor, next_field=next_field)
    if not text.startswith(prefix):
        raise invalid_cursor(next_field)
    try:
        return parse_seq(text[len(prefix) :])
    except ValueError:
        raise invalid_cursor(next_field) from None

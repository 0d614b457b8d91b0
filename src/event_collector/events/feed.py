"""Positions in the event feed (the listing a client tails with ``cursor``) and their cursors.

SQLite writes one transaction at a time, so arrival order (``seq``) is commit order and a
position is a ``seq``. On PostgreSQL, concurrent transactions (several group commits in flight,
several API processes) commit out of ``seq`` order, so a client that read up to ``seq`` 11 could
miss 10 committing after. There the feed is ordered by (writing transaction id, ``seq``) and
shows only rows of transactions older than the oldest one still running (the snapshot's xmin,
as outbox relays do): everything before that mark is final, so a position never has anything
appear behind it. See ``events.repository._commit_ordered_feed`` and the backend's
``below_commit_mark`` (``kit.db.postgres``).
"""

from __future__ import annotations

from dataclasses import dataclass

from event_collector.kit.cursors import decode_cursor, encode_cursor, invalid_cursor, parse_seq


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """After the event (``txid``, ``seq``). ``txid`` is 0 on SQLite and None for a cursor from
    before the feed had transaction ids (only its ``seq`` is known)."""

    txid: int | None
    seq: int


FEED_START = FeedPosition(0, 0)


def encode_feed_cursor(position: FeedPosition) -> str:
    return encode_cursor(f"f{position.txid or 0}.{position.seq}")


def decode_feed_cursor(cursor: str) -> FeedPosition:
    raw = decode_cursor(cursor)
    try:
        if raw.startswith("f"):
            txid, seq = raw[1:].split(".")
            return FeedPosition(parse_seq(txid), parse_seq(seq))
        if raw.startswith("s"):  # issued before the feed had transaction ids
            return FeedPosition(None, parse_seq(raw[1:]))
    except ValueError:
        pass
    raise invalid_cursor()

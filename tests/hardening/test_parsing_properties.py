"""Properties of the cursor and timestamp parsers every endpoint shares (kit.cursors,
kit.timefmt): any text is either a value the databases can hold or a clear 400, never another
exception."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from event_collector.events.feed import FeedPosition, decode_feed_cursor, encode_feed_cursor
from event_collector.kit.cursors import (
    MAX_SEQ,
    decode_seq_cursor,
    encode_cursor,
    encode_seq_cursor,
    parse_seq,
)
from event_collector.kit.errors import BadRequest
from event_collector.kit.timefmt import TimestampOutOfRange, parse_timestamp

seqs = st.integers(min_value=0, max_value=MAX_SEQ)
# Digits, signs, blanks, separators, non-ASCII digits, NUL: what int() is lenient about.
tricky_text = st.text(alphabet=st.sampled_from("0123456789+-_ .\x00\u0665\uff11sfpn:|Z"))


@given(seqs)
def test_every_sequence_number_round_trips(seq: int) -> None:
    assert parse_seq(str(seq)) == seq
    assert decode_seq_cursor(encode_seq_cursor("p", seq), "p") == seq


@given(st.one_of(tricky_text, st.text(max_size=40)))
@settings(max_examples=500)
def test_parse_seq_returns_a_storable_number_or_raises_value_error(text: str) -> None:
    try:
        value = parse_seq(text)
    except ValueError:
        return
    assert 0 <= value <= MAX_SEQ
    assert str(value).zfill(len(text)) == text  # plain ASCII digits, nothing else


@given(st.one_of(tricky_text, st.text(max_size=40)), st.sampled_from(["s", "p", "n:"]))
@settings(max_examples=500)
def test_a_seq_cursor_is_a_storable_number_or_a_400(text: str, prefix: str) -> None:
    for cursor in (encode_cursor(text), text):
        refused: BadRequest | None = None
        try:
            value = decode_seq_cursor(cursor, prefix)
        except BadRequest as exc:
            refused = exc
        if refused is not None:
            assert refused.detail.startswith("cursor is not valid")
        else:
            assert 0 <= value <= MAX_SEQ


@given(st.integers(min_value=0, max_value=MAX_SEQ), seqs)
def test_feed_positions_round_trip(txid: int, seq: int) -> None:
    assert decode_feed_cursor(encode_feed_cursor(FeedPosition(txid, seq))) == FeedPosition(
        txid, seq
    )


@given(st.one_of(tricky_text, st.text(max_size=60)))
@settings(max_examples=500)
def test_a_feed_cursor_is_a_storable_position_or_a_400(text: str) -> None:
    try:
        position = decode_feed_cursor(encode_cursor(text))
    except BadRequest:
        return
    assert position.txid is None or 0 <= position.txid <= MAX_SEQ
    assert 0 <= position.seq <= MAX_SEQ


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(st.datetimes(), offsets)
@settings(max_examples=500)
def test_a_timestamp_is_the_same_instant_in_utc_or_out_of_range(
    naive: datetime, offset: timezone
) -> None:
    local = naive.replace(tzinfo=offset)
    refused: TimestampOutOfRange | None = None
    try:
        parsed = parse_timestamp(local.isoformat())
    except TimestampOutOfRange as exc:
        refused = exc
    if refused is not None:
        assert "out of range" in str(refused)
        # Only instants that fall outside years 1…9999 once in UTC are refused.
        assert local.year in (1, 9999)
    else:
        assert parsed.tzinfo is UTC
        assert parsed == local


@given(st.text(max_size=40))
@settings(max_examples=500)
def test_any_text_is_a_utc_timestamp_or_a_value_error(text: str) -> None:
    try:
        parsed = parse_timestamp(text)
    except ValueError:
        return
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59"])
def test_the_probes_timestamps_are_out_of_range(text: str) -> None:
    with pytest.raises(TimestampOutOfRange):
        parse_timestamp(text)

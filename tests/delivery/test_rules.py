"""Pure rules: signatures (checked against the standardwebhooks package), retry delays."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from event_collector.delivery.messages import OutgoingMessage
from event_collector.delivery.senders import chunk_for_aws, parse_retry_after, sign
from event_collector.delivery.service import retry_delay
from event_collector.kit.settings import Settings


@settings(max_examples=50, deadline=None)
@given(
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.text(alphabet="abcdef0123456789-", min_size=1, max_size=40),
    body=st.text(max_size=200),
)
def test_signature_verifies_with_standard_webhooks(key: bytes, msg_id: str, body: str) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    timestamp = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body.encode()),
    }
    Webhook(secret).verify(body.encode(), headers, json_parse=False)


@given(attempt=st.integers(min_value=1, max_value=10), retry_after=st.none() | st.floats(0, 1e6))
def test_retry_delay_follows_schedule_with_jitter(attempt: int, retry_after: float | None) -> None:
    config = Settings(
        delivery_retry_schedule=[5, 300, 1800],
        delivery_retry_jitter=0.2,
        delivery_max_retry_after_seconds=3600,
    )
    delay = retry_delay(config, attempt, retry_after)
    if attempt > 3:
        assert delay is None
        return
    assert delay is not None
    base = [5, 300, 1800][attempt - 1]
    low = base * 0.8
    high = max(base * 1.2, min(retry_after or 0, 3600))
    assert low <= delay <= high + 1e-9


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert 0 <= (parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") or 0) <= 1


def test_aws_batches_respect_count_and_size() -> None:
    small = [OutgoingMessage(str(i), "x" * 10, {}, "g") for i in range(23)]
    assert [len(c) for c in chunk_for_aws(small)] == [10, 10, 3]
    big = [OutgoingMessage(str(i), "x" * 100_000, {}, "g") for i in range(5)]
    assert [len(c) for c in chunk_for_aws(big)] == [2, 2, 1]

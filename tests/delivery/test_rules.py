"""Pure rules: signatures (checked against the standardwebhooks package), retry delays."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from event_collector.delivery.messages import OutgoingMessage
from event_collector.delivery.senders import (
    Destination,
    Senders,
    chunk_for_aws,
    parse_retry_after,
    region_of,
    sign,
)
from event_collector.delivery.service import retry_delay
from event_collector.kit.settings import Settings
from tests.delivery.conftest import WebhookReceiver


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
    small = [OutgoingMessage(str(i), "x" * 10, {}, "g", str(i)) for i in range(23)]
    assert [len(c) for c in chunk_for_aws(small)] == [10, 10, 3]
    big = [OutgoingMessage(str(i), "x" * 100_000, {}, "g", str(i)) for i in range(5)]
    assert [len(c) for c in chunk_for_aws(big)] == [2, 2, 1]


def test_region_of_queue_urls_and_arns() -> None:
    assert region_of("https://sqs.eu-west-1.amazonaws.com/123/q") == "eu-west-1"
    assert region_of("arn:aws:sns:ap-southeast-2:123:topic") == "ap-southeast-2"
    assert region_of("http://127.0.0.1:5000/123/q") == "us-east-1"


async def test_webhook_sends_refuse_non_public_addresses_unless_allowed(
    webhook_receiver: WebhookReceiver,
) -> None:
    """The send-time half of kit/netpolicy, through the sender production uses."""
    port = webhook_receiver.base_url.rsplit(":", 1)[1]
    message = OutgoingMessage("d-1", "{}", {}, "g", "d-1")

    def to(url: str) -> Destination:
        return Destination("t", "s", "WEBHOOK", {"url": url}, None)

    strict = Senders(Settings())
    try:
        for url in (
            "http://127.0.0.1/hook",
            "http://localhost:8080/hook",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "ftp://example.com/",
        ):
            (result,) = await strict.send(to(url), [message])
            assert not result.ok, url
            assert result.permanent, url
            assert (result.error or "").startswith("refused"), result.error
    finally:
        await strict.close()
    tag = uuid.uuid4().hex[:8]
    allowing = Senders(Settings(webhook_allowed_hosts="localhost,10.0.0.0/8,127.0.0.1"))
    try:
        for url in (f"http://localhost:{port}/ok/{tag}", f"http://127.0.0.1:{port}/ok/{tag}"):
            (result,) = await allowing.send(to(url), [message])
            assert result.ok, (url, result.error)
        (refused,) = await allowing.send(to("http://192.168.1.1/"), [message])
        assert (refused.error or "").startswith("refused"), refused.error
        assert len(webhook_receiver.for_path(f"/ok/{tag}")) == 2
    finally:
        await allowing.close()


async def test_webhook_connects_to_the_vetted_address_keeping_the_host_name(
    webhook_receiver: WebhookReceiver,
) -> None:
    port = webhook_receiver.base_url.rsplit(":", 1)[1]
    tag = uuid.uuid4().hex[:8]
    senders = Senders(Settings(webhook_allowed_hosts="127.0.0.0/8,::1"))
    try:
        destination = Destination(
            "t", "s", "WEBHOOK", {"url": f"http://localhost:{port}/ok/pin/{tag}"}, None
        )
        message = OutgoingMessage("d-1", '{"a":1}', {}, "g", "d-1")
        (result,) = await senders.send(destination, [message])
        assert result.ok, result.error
        (request,) = webhook_receiver.for_path(f"/ok/pin/{tag}")
        assert request.headers["host"] == f"localhost:{port}"
        assert senders._resolved["localhost"][2] == "127.0.0.1"  # connected to the pinned address
    finally:
        await senders.close()


def test_aws_errors_are_classified() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from event_collector.delivery.senders import _aws_batch_results, _aws_failure

    def client_error(code: str, status: int) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "SendMessageBatch",
        )

    throttled = _aws_failure(client_error("ThrottlingException", 400))
    assert not throttled.ok
    assert not throttled.permanent
    assert not _aws_failure(client_error("InternalError", 500)).permanent
    assert _aws_failure(client_error("AWS.SimpleQueueService.NonExistentQueue", 400)).permanent
    assert _aws_failure(client_error("AccessDenied", 403)).permanent
    assert not _aws_failure(EndpointConnectionError(endpoint_url="http://x")).permanent
    results = _aws_batch_results(
        {
            "Successful": [{"Id": "0"}],
            "Failed": [
                {"Id": "1", "SenderFault": True, "Code": "InvalidParameterValue"},
                {"Id": "2", "SenderFault": False, "Code": "InternalError"},
            ],
            "ResponseMetadata": {"HTTPStatusCode": 200},
        },
        3,
    )
    assert [(r.ok, r.permanent) for r in results] == [(True, False), (False, True), (False, False)]

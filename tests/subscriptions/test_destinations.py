"""Destination rules and the SSRF policy (kit/netpolicy: what subscriptions call when written
and the webhook sender at send time) as pure functions, with property tests."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from event_collector.kit.crypto import is_masked, mask
from event_collector.kit.errors import ValidationFailed
from event_collector.kit.netpolicy import address_refusal, literal_ip, url_refusal
from event_collector.subscriptions.destinations import check_webhook_secret, normalize_destination
from event_collector.subscriptions.schemas import DestinationIn
from event_collector.subscriptions.service import generate_webhook_secret

regions = st.sampled_from(
    ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1"]
)
accounts = st.from_regex(r"\A\d{12}\Z")
queue_names = st.from_regex(r"\A[A-Za-z0-9_-]{1,80}(\.fifo)?\Z")


def normalize(raw: dict[str, Any]) -> Any:
    return normalize_destination(DestinationIn.model_validate(raw))


@given(region=regions, account=accounts, name=queue_names)
def test_sqs_region_comes_from_the_queue_url(region: str, account: str, name: str) -> None:
    url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
    destination = normalize({"type": "SQS", "sqs": {"queueUrl": url}})
    assert destination.type == "SQS"
    assert destination.config == {"queueUrl": url, "region": region, "accessKey": None}
    assert destination.secret is None


@given(region=regions, account=accounts, name=queue_names)
def test_sns_region_comes_from_the_arn_and_the_legacy_form_agrees(
    region: str, account: str, name: str
) -> None:
    arn = f"arn:aws:sns:{region}:{account}:{name}"
    modern = normalize(
        {"type": "SNS", "sns": {"topicArn": arn, "accessKey": "K", "accessSecret": "S"}}
    )
    legacy = normalize(
        {"type": "SNS", "sqs": {"queueUrl": arn, "accessKey": "K", "accessSecret": "S"}}
    )
    assert modern == legacy
    assert modern.config == {"topicArn": arn, "region": region, "accessKey": "K"}
    assert modern.secret == "S"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "type",
                        "sqs",
                        "sns",
                        "webhook",
                        "queueUrl",
                        "topicArn",
                        "url",
                        "region",
                        "accessKey",
                        "accessSecret",
                        "secret",
                        "headers",
                        "x",
                    ]
                ),
                children,
                max_size=5,
            )
        ),
        max_leaves=12,
    )
)
@settings(max_examples=300)
def test_any_input_is_either_accepted_or_a_clear_validation_error(raw: Any) -> None:
    """Never anything but a Destination or a 400 (no 500 for whatever a client sends)."""
    try:
        parsed = DestinationIn.model_validate(raw)
    except ValidationError:
        return
    try:
        destination = normalize_destination(parsed)
    except ValidationFailed as exc:
        problems = exc.errors
    else:
        assert destination.type in ("SQS", "SNS", "WEBHOOK")
        assert "accessSecret" not in destination.config
        assert "secret" not in destination.config
        return
    assert problems
    assert all(problem["msg"] for problem in problems)


def test_generated_webhook_secrets_are_valid_and_distinct() -> None:
    generated = {generate_webhook_secret() for _ in range(50)}
    assert len(generated) == 50
    assert all(check_webhook_secret(secret) is None for secret in generated)


@given(st.text(min_size=1, max_size=80))
def test_masking_never_shows_more_than_four_characters(secret: str) -> None:
    masked = mask(secret)
    assert masked is not None
    assert is_masked(masked)
    assert len(masked) <= len("********") + 4
    if len(secret) < 12:
        assert masked == "********"


private_v4 = st.sampled_from(
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "0.0.0.0/8",
    ]
).flatmap(
    lambda net: st.integers(
        int(ipaddress.ip_network(net).network_address),
        int(ipaddress.ip_network(net).broadcast_address),
    )
)


@given(private_v4)
def test_private_ipv4_webhooks_are_refused_in_every_spelling(value: int) -> None:
    address = ipaddress.IPv4Address(value)
    for host in (str(address), str(value), f"[::ffff:{address}]"):
        assert url_refusal(f"http://{host}/hook", []) is not None, host
    assert url_refusal(f"http://{address}/hook", [f"{address}/32"]) is None
    assert address_refusal("example.com", address, []) is not None


@given(st.integers(0, 2**32 - 1))
def test_public_ipv4_webhooks_are_accepted(value: int) -> None:
    address = ipaddress.IPv4Address(value)
    if not address.is_global or address.is_multicast:
        return
    assert url_refusal(f"https://{address}/hook", []) is None
    assert address_refusal("example.com", address, []) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", None),
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:192.168.1.1", "192.168.1.1"),
    ],
)
def test_literal_ip(host: str, expected: str | None) -> None:
    address = literal_ip(host)
    assert (str(address) if address else None) == expected


def test_allow_list_by_name_and_network() -> None:
    assert url_refusal("http://localhost:8000/h", []) is not None
    assert url_refusal("http://localhost:8000/h", ["LOCALHOST"]) is None
    assert url_refusal("http://[::1]:8000/h", ["::1/128"]) is None
    assert url_refusal("http://[::1]:8000/h", ["127.0.0.0/8"]) is not None
    assert url_refusal("https://hooks.example.com/h", []) is None
    loopback = ipaddress.ip_address("127.0.0.1")
    assert address_refusal("sink.internal", loopback, ["sink.internal"]) is None
    assert address_refusal("other.internal", loopback, ["sink.internal"]) is not None

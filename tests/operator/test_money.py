"""Amounts keep their precision (issue 13 item 6): the currency's minor units, or more digits
when the amount has them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from event_collector.kit.money import format_amount


@pytest.mark.parametrize(
    ("stored", "currency", "shown"),
    [
        ("100.000000", "EUR", "100.00"),  # "100.00" as sent, "100" too: cents
        ("100.500000", "EUR", "100.50"),
        ("19.999000", "EUR", "19.999"),  # more precision than cents is kept
        ("0.000000", "USD", "0.00"),
        ("-3.100000", "usd", "-3.10"),
        ("500.000000", "JPY", "500"),  # no minor unit
        ("1.500000", "KWD", "1.500"),  # three
        ("12345678901234.000000", "EUR", "12345678901234.00"),
        ("100.000000", None, "100"),  # no currency: the digits it has
        ("0.000001", "EUR", "0.000001"),
    ],
)
def test_amounts_keep_their_precision(stored: str, currency: str | None, shown: str) -> None:
    assert format_amount(Decimal(stored), currency) == shown


def test_no_amount() -> None:
    assert format_amount(None, "EUR") is None

"""Amounts as decimal strings, at the currency's precision."""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 minor units where they are not 2 (JPY has none, KWD three …).
_CURRENCIES_BY_MINOR_UNITS = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}
_MINOR_UNITS = {
    code: units for units, codes in _CURRENCIES_BY_MINOR_UNITS.items() for code in codes.split()
}


def format_amount(value: Decimal | None, currency: str | None) -> str | None:
    """``value`` with the currency's minor units, or more digits when it has them: "100.00" and
    "100" in EUR are "100.00", "19.999" stays "19.999", 500 JPY is "500". Without a currency,
    the digits the value has ("100")."""
    if value is None:
        return None
    amount = Decimal(value)
    significant = max(-int(amount.normalize().as_tuple().exponent), 0)
    minor = _MINOR_UNITS.get(currency.upper(), 2) if currency else 0
    return format(amount.quantize(Decimal(1).scaleb(-max(significant, minor))), "f")

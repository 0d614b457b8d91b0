"""Decoding and normalising entity payloads into what the read model stores.

Payloads come from many connectors: keys in camelCase or snake_case (``customerRef`` and
``customer_ref`` are the same field), numbers as JSON numbers or strings, booleans as booleans or
strings. Each parser returns an :class:`Entity` holding only the fields the payload *carries*
(an absent key leaves the stored value alone; an explicit ``null`` clears it), or raises
:class:`PayloadProblem` when the payload cannot be used at all (for example a missing key field).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from event_collector.kit.timefmt import parse_timestamp

# Sentinel for "the payload does not carry this field".
_ABSENT: Any = object()


class PayloadProblem(ValueError):
    """The payload (or one element of a bulk payload) cannot be used by the read model."""


@dataclass(slots=True)
class Entity:
    """One normalised entity from a payload."""

    key: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)
    # True/False when the payload says so explicitly (`deleted`), else None.
    deleted: bool | None = None
    modified_at: datetime | None = None
    # Nested entities carried by this one (embedded wishlist items, a product's variants).
    children: list[tuple[str, Entity]] = field(default_factory=list)
    # Embedded price objects of a product/variant: (currency, price, sale_price).
    prices: list[Entity] = field(default_factory=list)
    # Non-fatal problems (a field that was ignored); recorded, the rest still applies.
    warnings: list[str] = field(default_factory=list)


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


class Fields:
    """Case- and underscore-insensitive access to a JSON object."""

    __slots__ = ("_data",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._data = {_norm(k): v for k, v in raw.items() if isinstance(k, str)}

    def get(self, *names: str) -> Any:
        for name in names:
            value = self._data.get(_norm(name), _ABSENT)
            if value is not _ABSENT:
                return value
        return _ABSENT

    def has(self, *names: str) -> bool:
        return self.get(*names) is not _ABSENT

    def obj(self, *names: str) -> Fields | None:
        value = self.get(*names)
        return Fields(value) if isinstance(value, Mapping) else None


# --- scalar coercion ---------------------------------------------------------------------------


def as_text(value: Any, limit: int = 255) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] if value else None


def as_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "y", "t"}:
            return True
        if lowered in {"false", "0", "no", "n", "f", ""}:
            return False
    raise ValueError("not a boolean")


def as_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError("not a number") from None
    if not number.is_finite() or abs(number) >= Decimal(10) ** 14:
        raise ValueError("not a usable number")
    return number.quantize(Decimal("0.000001"))


def as_int(value: Any) -> int | None:
    number = as_decimal(value)
    if number is None:
        return None
    if abs(number) >= 2**31:
        raise ValueError("out of range")
    return int(number)


def as_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("not a timestamp")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise ValueError("not an ISO-8601 timestamp") from None


def effective_price(price: Decimal | None, sale_price: Decimal | None) -> Decimal | None:
    """salePrice when set and lower than price (or when price is unknown), else price."""
    if sale_price is not None and (price is None or sale_price < price):
        return sale_price
    return price


# --- entity parsers ----------------------------------------------------------------------------


class _Builder:
    def __init__(self, data: Fields) -> None:
        self.data = data
        self.entity = Entity(key={})

    def put(
        self,
        column: str,
        names: tuple[str, ...],
        convert: Callable[[Any], Any] = as_text,
        source: Fields | None = None,
    ) -> None:
        value = (source or self.data).get(*names)
        if value is _ABSENT:
            return
        try:
            self.entity.fields[column] = convert(value)
        except ValueError as exc:
            self.entity.warnings.append(f"{names[0]}: {exc}; ignored")

    def common(self) -> None:
        data = self.data
        deleted = data.get("deleted")
        if deleted is not _ABSENT:
            try:
                self.entity.deleted = as_bool(deleted)
            except ValueError:
                self.entity.warnings.append("deleted: not a boolean; ignored")
        modified = data.get("lastModifiedDate", "modifiedTime", "modifiedDate", "updatedAt")
        if modified is not _ABSENT:
            try:
                self.entity.modified_at = as_time(modified)
            except ValueError:
                self.entity.warnings.append("modified time: not a timestamp; ignored")

    def require_id(self, fallback: str | None, *names: str) -> str:
        value = as_text(self.data.get(*names)) or fallback
        if value is None:
            raise PayloadProblem(f"missing {names[0]}")
        return value


def _fields(raw: Any) -> Fields:
    if not isinstance(raw, Mapping):
        raise PayloadProblem("the payload is not a JSON object")
    return Fields(raw)


def parse_customer(raw: Any, fallback_id: str | None) -> Entity:
    b = _Builder(_fields(raw))
    b.entity.key = {"id": b.require_id(fallback_id, "id", "customerId")}
    b.put("ref", ("customerRef",))
    b.put("email", ("email",), lambda v: as_text(v, 320))
    b.put("first_name", ("firstName",))
    b.put("last_name", ("lastName",))
    b.put("accepts_marketing", ("acceptsMarketing",), as_bool)
    b.put("active", ("active",), as_bool)
    optin = b.data.obj("optinPreferences", "optInPreferences")
    email_optin = optin.obj("email") if optin else None
    consent_time: Any = _ABSENT
    if email_optin is not None:
        b.put("opt_in_active", ("optInActive", "optinActive"), as_bool, source=email_optin)
        consent_time = email_optin.get("optInUpdatedAt", "optedInAt")
    if consent_time is _ABSENT:
        consent_time = b.data.get("acceptsMarketingUpdatedAt", "marketingPreferencesUpdatedAt")
    if consent_time is not _ABSENT:
        try:
            b.entity.fields["consent_updated_at"] = as_time(consent_time)
        except ValueError:
            b.entity.warnings.append("consent time: not a timestamp; ignored")
    b.common()
    return b.entity


def parse_wishlist_item(
    raw: Any, fallback_id: str | None, *, wishlist_id: str | None = None
) -> Entity:
    b = _Builder(_fields(raw))
    b.entity.key = {"id": b.require_id(fallback_id, "id", "wishlistItemId")}
    b.put("ref", ("wishlistItemRef",))
    b.put("wishlist_id", ("wishlistId",))
    b.put("wishlist_ref", ("wishlistRef",))
    if wishlist_id is not None and b.entity.fields.get("wishlist_id") is None:
        b.entity.fields["wishlist_id"] = wishlist_id
    product = b.data.obj("product")
    for source in (b.data, product):
        if source is None:
            continue
        b.put("product_id", ("productId",), source=source)
        b.put("product_ref", ("productRef",), source=source)
        b.put("variant_id", ("selectedVariantId", "variantId"), source=source)
        b.put("variant_ref", ("selectedVariantRef", "variantRef"), source=source)
    b.put("purchased", ("purchased",), as_bool)
    b.put("disable_notification", ("disableNotification",), as_bool)
    b.put("notify_me", ("notifyMe",), as_bool)
    b.put("added_at", ("createdTime", "createdDate", "addedTime"), as_time)
    b.common()
    return b.entity


def parse_wishlist(raw: Any, fallback_id: str | None) -> Entity:
    b = _Builder(_fields(raw))
    wishlist_id = b.require_id(fallback_id, "id", "wishlistId")
    b.entity.key = {"id": wishlist_id}
    b.put("ref", ("wishlistRef",))
    b.put("name", ("name",))
    b.put("customer_id", ("customerId",))
    b.put("customer_ref", ("customerRef",))
    b.put("created_time", ("createdTime",), as_time)
    b.common()
    items = b.data.get("wishlistItems", "items")
    if isinstance(items, list):
        for index, item in enumerate(items):
            try:
                child = parse_wishlist_item(item, None, wishlist_id=wishlist_id)
            except PayloadProblem as exc:
                b.entity.warnings.append(f"wishlistItems[{index}]: {exc}; ignored")
                continue
            if "wishlist_ref" not in child.fields and "ref" in b.entity.fields:
                child.fields["wishlist_ref"] = b.entity.fields["ref"]
            b.entity.children.append(("WISHLIST_ITEM", child))
    return b.entity


def _price_objects(b: _Builder, variant_id: str) -> None:
    value = b.data.get("price", "prices")
    if value is _ABSENT or value is None or isinstance(value, str | int | float):
        return
    objects = value if isinstance(value, list) else [value]
    for index, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            b.entity.warnings.append(f"price[{index}]: not an object; ignored")
            continue
        try:
            price = parse_price(obj, None, variant_id=variant_id)
        except PayloadProblem as exc:
            b.entity.warnings.append(f"price: {exc}; ignored")
            continue
        b.entity.warnings.extend(price.warnings)
        price.warnings = []
        b.entity.prices.append(price)
        if index == 0:
            b.entity.fields["price_currency"] = price.key["currency"]
            b.entity.fields["price"] = price.fields.get("price")
            b.entity.fields["sale_price"] = price.fields.get("sale_price")


def _sellable(raw: Any, fallback_id: str | None, *, variant: bool) -> Entity:
    b = _Builder(_fields(raw))
    entity_id = b.require_id(fallback_id, "id", "variantId" if variant else "productId")
    b.entity.key = {"id": entity_id}
    b.put("ref", ("productRef", "variantRef") if variant else ("productRef",))
    b.put("title", ("title", "name"), lambda v: as_text(v, 2000))
    b.put("link", ("link",), lambda v: as_text(v, 4000))
    b.put("image_link", ("imageLink",), lambda v: as_text(v, 4000))
    b.put("low_stock_threshold", ("lowStockThreshold",), as_int)
    b.put("back_in_stock_threshold", ("backInStockThreshold",), as_int)
    b.put("disabled", ("disabled",), as_bool)
    stock = b.data.obj("stock")
    if stock is not None:
        b.put("total_stock", ("totalStock",), as_int, source=stock)
    elif b.data.has("totalStock"):
        b.put("total_stock", ("totalStock",), as_int)
    if variant:
        b.put("base_product_id", ("baseProductId",))
        b.put("base_product_ref", ("baseProductRef",))
    b.common()
    _price_objects(b, entity_id)
    if not variant:
        variants = b.data.get("variants")
        if isinstance(variants, list):
            for index, item in enumerate(variants):
                if not isinstance(item, Mapping):
                    continue
                try:
                    child = parse_variant(item, None)
                except PayloadProblem as exc:
                    b.entity.warnings.append(f"variants[{index}]: {exc}; ignored")
                    continue
                child.fields.setdefault("base_product_id", entity_id)
                if "ref" in b.entity.fields:
                    child.fields.setdefault("base_product_ref", b.entity.fields["ref"])
                b.entity.children.append(("VARIANT_PRODUCT", child))
    return b.entity


def parse_product(raw: Any, fallback_id: str | None) -> Entity:
    return _sellable(raw, fallback_id, variant=False)


def parse_variant(raw: Any, fallback_id: str | None) -> Entity:
    return _sellable(raw, fallback_id, variant=True)


def parse_price(raw: Any, fallback_id: str | None, *, variant_id: str | None = None) -> Entity:
    b = _Builder(_fields(raw))
    variant = as_text(b.data.get("productVariantId", "variantId")) or variant_id
    if variant is None:
        raise PayloadProblem("missing productVariantId")
    currency = as_text(b.data.get("currencyCode", "currency"), 8)
    if currency is None:
        raise PayloadProblem("missing currencyCode")
    b.entity.key = {"variant_id": variant, "currency": currency.upper()}
    price_id = as_text(b.data.get("id", "priceRef")) or fallback_id
    if price_id is not None and variant_id is None:
        b.entity.fields["price_id"] = price_id
    b.put("price", ("price",), as_decimal)
    b.put("sale_price", ("salePrice",), as_decimal)
    b.put("active", ("active",), as_bool)
    b.common()
    no_amount = b.entity.fields.get("price") is None and b.entity.fields.get("sale_price") is None
    if no_amount and (b.data.has("price") or b.data.has("salePrice")):
        raise PayloadProblem("price and salePrice are both empty or not numbers")
    return b.entity


def parse_inventory_level(raw: Any, fallback_id: str | None) -> Entity:
    b = _Builder(_fields(raw))
    variant = as_text(b.data.get("productVariantId", "variantId"))
    if variant is None:
        raise PayloadProblem("missing productVariantId")
    location_id = as_text(b.data.get("locationId"))
    location_ref = as_text(b.data.get("locationRef"))
    b.entity.key = {"variant_id": variant, "location": location_id or location_ref or ""}
    if location_id is not None:
        b.entity.fields["location_id"] = location_id
    if location_ref is not None:
        b.entity.fields["location_ref"] = location_ref
    level_id = as_text(b.data.get("id", "stockRef")) or fallback_id
    if level_id is not None:
        b.entity.fields["level_id"] = level_id
    b.put("stock_on_hand", ("stockOnHand",), as_int)
    b.put("reserved", ("reserved",), as_int)
    b.put("excluded_quantity", ("excludedQuantity",), as_int)
    b.common()
    return b.entity


PARSERS: dict[str, Callable[[Any, str | None], Entity]] = {
    "CUSTOMER": parse_customer,
    "WISHLIST": parse_wishlist,
    "WISHLIST_ITEM": parse_wishlist_item,
    "PRODUCT": parse_product,
    "VARIANT_PRODUCT": parse_variant,
    "PRICE": parse_price,
    "INVENTORY_LEVEL": parse_inventory_level,
}

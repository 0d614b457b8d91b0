"""What a notification says: its items (with UTM links), the template data, the rendered email.

The same :class:`Message` feeds every channel: outbox and SMTP render the Jinja templates,
SendGrid gets ``template_data`` as ``dynamic_template_data`` (the contract in
docs/notifications.md), NOTIFICATION messages get :func:`subscription_message`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)
from sqlalchemy.engine import RowMapping

from event_collector.kit.money import format_amount
from event_collector.notifications.rules import PRICE_DROP

DEFAULT_UTM_SOURCE = "event-collector"


@dataclass(frozen=True)
class Campaign:
    """The job's identity and link tagging (job_parameters campaign_id, utm_medium, utm_source)."""

    job_id: str
    notification_type: str
    template_id: str | None
    campaign_id: str | None
    utm_medium: str | None
    utm_source: str = DEFAULT_UTM_SOURCE

    @classmethod
    def from_job(
        cls,
        job_id: str,
        notification_type: str,
        template_id: str | None,
        parameters: Mapping[str, Any],
    ) -> Campaign:
        def text(key: str) -> str | None:
            value = parameters.get(key)
            return None if value is None or value == "" else str(value)

        return cls(
            job_id=job_id,
            notification_type=notification_type,
            template_id=template_id or None,
            campaign_id=text("campaign_id"),
            utm_medium=text("utm_medium"),
            utm_source=text("utm_source") or DEFAULT_UTM_SOURCE,
        )

    def as_data(self) -> dict[str, Any]:
        return {
            "id": self.campaign_id,
            "utm_source": self.utm_source,
            "utm_medium": self.utm_medium,
        }


def with_utm(link: str | None, campaign: Campaign) -> str | None:
    """``link`` with utm_source/utm_medium/utm_campaign set; its other query parameters, their
    order and the fragment are kept (a utm parameter it already had is replaced)."""
    if not link:
        return link
    parts = urlsplit(link)
    ours = {
        "utm_source": campaign.utm_source,
        "utm_medium": campaign.utm_medium,
        "utm_campaign": campaign.campaign_id,
    }
    tags = {key: value for key, value in ours.items() if value is not None}
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in tags]
    query = urlencode([*kept, *tags.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def money(value: Any, currency: str | None) -> str | None:
    """An amount as the read API shows it (kit.money): the currency's minor units, so 500 JPY
    is "500" and 5 EUR "5.00". ``str`` first: an SQLite expression may yield a float."""
    return format_amount(None if value is None else Decimal(str(value)), currency)


@dataclass
class Message:
    """One customer's notification of one run."""

    customer: dict[str, Any]
    items: list[dict[str, Any]]
    # The ledger keys of the items: (item id, episode, price level).
    claims: list[tuple[str, str, Decimal | None]] = field(repr=False)
    # The ledger rows this run claimed for it (set by ledger.claim).
    ledger_ids: list[int] = field(default_factory=list, repr=False)
    subject: str | None = None
    text: str | None = None
    html: str | None = None

    @property
    def customer_id(self) -> str:
        return str(self.customer["id"])

    @property
    def recipient(self) -> str:
        return str(self.customer["email"])


def item_data(row: RowMapping, campaign: Campaign) -> dict[str, Any]:
    """An item as messages show it (from a candidate row of rules.candidates_query)."""
    new_price = row["effective_price"]
    old_price = row["baseline_price"] if campaign.notification_type == PRICE_DROP else None
    saving = saving_percent = None
    if old_price is not None and new_price is not None:
        saving_amount = Decimal(str(old_price)) - Decimal(str(new_price))
        saving = money(saving_amount, row["currency"])
        if Decimal(str(old_price)):
            saving_percent = int(
                (saving_amount * 100 / Decimal(str(old_price))).to_integral_value()
            )
    return {
        "item_id": row["item_id"],
        "item_ref": row["item_ref"],
        "wishlist_id": row["wishlist_id"],
        "wishlist_ref": row["wishlist_ref"],
        "product_id": row["sellable_id"],
        "title": row["title"],
        "link": with_utm(row["link"], campaign),
        "image": row["image_link"],
        "currency": row["currency"],
        "price": money(row["price"], row["currency"]),
        "sale_price": money(row["sale_price"], row["currency"]),
        "new_price": money(new_price, row["currency"]),
        "old_price": money(old_price, row["currency"]),
        "saving": saving,
        "saving_percent": saving_percent,
        "stock": row["available_stock"],
        # The stock threshold the rule used (BACK_IN_STOCK / LOW_STOCK), for the send-time check.
        "stock_threshold": row["stock_threshold"],
        "notify_me": bool(row["notify_me"]),
    }


def customer_data(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["customer_id"],
        "ref": row["customer_ref"],
        "email": row["customer_email"],
        "first_name": row["customer_first_name"],
        "last_name": row["customer_last_name"],
    }


def template_data(message: Message, campaign: Campaign) -> dict[str, Any]:
    """SendGrid's dynamic_template_data (and the Jinja templates' context)."""
    return {
        "notification_type": campaign.notification_type,
        "customer": {k: message.customer[k] for k in ("id", "first_name", "last_name", "email")},
        "items": message.items,
        "campaign": campaign.as_data(),
        "job": {"id": campaign.job_id},
    }


def subscription_message(message: Message, campaign: Campaign) -> dict[str, Any]:
    """The NOTIFICATION message of DESIGN §6.5."""
    return {
        "event": {"type": campaign.notification_type},
        "customer": message.customer,
        "products": [
            {
                "id": item["product_id"],
                "title": item["title"],
                "link": item["link"],
                "image": item["image"],
                "wishlist": {
                    "id": item["wishlist_id"],
                    "ref": item["wishlist_ref"],
                    "itemId": item["item_id"],
                    "itemRef": item["item_ref"],
                },
                "price": {
                    "currencyCode": item["currency"],
                    "price": item["price"],
                    "salePrice": item["sale_price"],
                    "oldPrice": item["old_price"],
                },
                "stock": {"available": item["stock"]},
            }
            for item in message.items
        ],
        "job": {
            "id": campaign.job_id,
            "campaign_id": campaign.campaign_id,
            "utm_medium": campaign.utm_medium,
        },
    }


class Renderer:
    """Jinja templates: a templates directory (EC_NOTIFY_TEMPLATES_DIR) over the built-in ones.

    A job's ``template_id`` names ``<template_id>.subject`` / ``.txt`` / ``.html``; when those do
    not exist the notification type's (``price_drop.txt`` …) are used. HTML is autoescaped.
    """

    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders: list[Any] = [PackageLoader("event_collector.notifications", "templates")]
        if templates_dir is not None:
            loaders.insert(0, FileSystemLoader(str(templates_dir)))
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # Templates are read once per process: a stat per render cost more than the render.
            auto_reload=False,
        )
        self._chosen: dict[tuple[str, str | None, str], Any] = {}

    def _template(self, campaign: Campaign, suffix: str) -> Any:
        key = (campaign.notification_type, campaign.template_id, suffix)
        if key not in self._chosen:
            self._chosen[key] = self._select(campaign, suffix)
        return self._chosen[key]

    def _select(self, campaign: Campaign, suffix: str) -> Any:
        names = [f"{campaign.notification_type.lower()}.{suffix}"]
        if campaign.template_id and "/" not in campaign.template_id:
            names.insert(0, f"{campaign.template_id}.{suffix}")
        try:
            return self._env.select_template(names)
        except TemplateNotFound:
            raise LookupError(f"no template {names[-1]}") from None

    def render(self, message: Message, campaign: Campaign) -> None:
        context = template_data(message, campaign)
        message.subject = self._template(campaign, "subject").render(context).strip()
        message.text = self._template(campaign, "txt").render(context)
        message.html = self._template(campaign, "html").render(context)

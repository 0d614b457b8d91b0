"""The gates and the four rules (DESIGN §6.2-6.3), evaluated set-wise in SQL.

One statement classifies every wishlist item of the tenant: ``reason`` is the first gate or rule
condition it fails (null when the item is eligible), ``relevance`` orders a customer's items,
``episode_number`` / ``price_level`` say which episode or price level it would be notified for.
:func:`run_query` aggregates the reasons and keeps the eligible items, ranked per customer and
cut at the item cap, in one pass: a run reads only the counts and what it will send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    Integer,
    Numeric,
    Select,
    String,
    Subquery,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE

from event_collector.kit.errors import BadRequest
from event_collector.models.notifications import notification_ledger_table
from event_collector.models.read_model import stock_episode_table, stock_table
from event_collector.read_model.items import resolved_items

PRICE_DROP = "PRICE_DROP"
BACK_IN_STOCK = "BACK_IN_STOCK"
LOW_STOCK = "LOW_STOCK"
REMINDER = "REMINDER"
NOTIFICATION_TYPES = (REMINDER, PRICE_DROP, LOW_STOCK, BACK_IN_STOCK)

# Skip reasons, in the order the gates apply (DESIGN §6.2), then the rules' own.
SKIP_REASONS = (
    "customer_unknown",
    "customer_deleted",
    "no_email",
    "no_consent",
    "item_deleted",
    "purchased",
    "notification_disabled",
    "product_unknown",
    "product_unavailable",
    "no_price",
    "currency_mismatch",
    "not_triggered",
    "already_sent",
    "cooldown",
)


@dataclass(frozen=True)
class RuleParameters:
    """A job's rule settings: job_parameters over the defaults of DESIGN §6.3."""

    notification: str
    job_id: str
    items_per_message: int
    min_drop_percent: Decimal = Decimal(10)
    min_drop_amount: Decimal = Decimal("0.01")
    back_in_stock_threshold: int = 1
    low_stock_threshold: int = 5
    reminder_interval: timedelta = timedelta(days=7)

    @classmethod
    def from_job(
        cls,
        *,
        job_id: str,
        notification: str,
        number_of_items_in_email: int,
        job_parameters: dict[str, Any],
        max_items: int,
    ) -> RuleParameters:
        if notification not in NOTIFICATION_TYPES:
            raise BadRequest(f"unknown notification type {notification!r}")
        if number_of_items_in_email == 0 or number_of_items_in_email < -1:
            raise BadRequest("number_of_items_in_email must be -1 (all) or >= 1")
        wanted = max_items if number_of_items_in_email == -1 else number_of_items_in_email
        return cls(
            notification=notification,
            job_id=job_id,
            items_per_message=min(wanted, max_items),
            min_drop_percent=_decimal(job_parameters, "min_drop_percent", Decimal(10)),
            min_drop_amount=_decimal(job_parameters, "min_drop_amount", Decimal("0.01")),
            back_in_stock_threshold=_integer(job_parameters, "back_in_stock_threshold", 1),
            low_stock_threshold=_integer(job_parameters, "low_stock_threshold", 5),
            reminder_interval=timedelta(
                days=float(_decimal(job_parameters, "reminder_interval_days", Decimal(7)))
            ),
        )

    def reminder_period(self, now: datetime) -> int:
        """The reminder period ``now`` falls in: the episode a reminder is sent for."""
        return int(now.timestamp() // self.reminder_interval.total_seconds())


def _decimal(parameters: dict[str, Any], key: str, default: Decimal) -> Decimal:
    value = parameters.get(key)
    if value is None:
        return default
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise BadRequest(f"job_parameters.{key} must be a number") from None
    if not number.is_finite() or number < 0:
        raise BadRequest(f"job_parameters.{key} must be a number >= 0")
    return number


def _integer(parameters: dict[str, Any], key: str, default: int) -> int:
    number = _decimal(parameters, key, Decimal(default))
    if number != number.to_integral_value():
        raise BadRequest(f"job_parameters.{key} must be a whole number")
    return int(number)


def _evaluated(tenant: str, params: RuleParameters, now: datetime) -> CTE:
    """Every item of the tenant with its skip reason (null = eligible) and ordering key."""
    ri = resolved_items(tenant)
    # The stock episode state (read_model.apply): which restock / low-stock episode is current.
    stock = stock_table.alias("episode_state")
    ledger = notification_ledger_table
    money = Numeric(20, 6)

    def ledger_has(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
        return (
            select(literal(1))
            .where(
                ledger.c.tenant == tenant,
                ledger.c.job_id == params.job_id,
                ledger.c.customer_id == ri.c.customer_id,
                *conditions,
            )
            .exists()
        )

    def episode_since_added(kind: str, number: ColumnElement[Any]) -> ColumnElement[bool]:
        """The episode started after the item was wished for (an older restock is no news)."""
        e = stock_episode_table
        return (
            select(literal(1))
            .where(
                e.c.tenant == tenant,
                e.c.variant_id == ri.c.sellable_id,
                e.c.kind == kind,
                e.c.episode == number,
                ri.c.item_created_time.is_(None) | (e.c.started_at >= ri.c.item_created_time),
            )
            .exists()
        )

    available = ri.c.available_stock
    episode_number: ColumnElement[Any] = null()
    price_level: ColumnElement[Any] = null()
    threshold: ColumnElement[Any] = null()
    rule: list[tuple[ColumnElement[bool], str]]
    if params.notification == PRICE_DROP:
        drop = ri.c.baseline_price - ri.c.effective_price
        # Both thresholds: drop >= max(amount, baseline * percent / 100), multiplied out so
        # that SQLite's integer arithmetic and floating point cannot move the boundary.
        triggered = and_(
            drop >= bindparam("min_drop_amount", params.min_drop_amount, money),
            drop * 100 >= ri.c.baseline_price * bindparam("pct", params.min_drop_percent, money),
        )
        rule = [
            (ri.c.baseline_price.is_(None), "no_price"),
            (ri.c.effective_price.is_(None), "no_price"),
            (ri.c.currency != ri.c.baseline_currency, "currency_mismatch"),
            (~triggered, "not_triggered"),
            # Once per new lower price level: anything notified at or below it blocks it.
            (
                ledger_has(
                    ledger.c.item_id == ri.c.item_id,
                    ledger.c.price_level <= ri.c.effective_price,
                ),
                "already_sent",
            ),
        ]
        relevance: ColumnElement[Any] = -(drop * 1.0 / ri.c.baseline_price)
        price_level = ri.c.effective_price
    elif params.notification == BACK_IN_STOCK:
        threshold = func.coalesce(
            ri.c.back_in_stock_threshold, bindparam("bis", params.back_in_stock_threshold)
        )
        triggered = and_(
            stock.c.restock_cycle >= 1,
            stock.c.out_of_stock.is_not(True),
            available >= threshold,
            episode_since_added("back_in_stock", stock.c.restock_cycle),
        )
        episode_number = stock.c.restock_cycle
        rule = [
            (~func.coalesce(triggered, False), "not_triggered"),
            (_ledger_episode(ledger_has, ri, "restock:", episode_number), "already_sent"),
        ]
        relevance = case((ri.c.notify_me, 0), else_=1)
    elif params.notification == LOW_STOCK:
        threshold = func.coalesce(
            ri.c.low_stock_threshold, bindparam("low", params.low_stock_threshold)
        )
        triggered = and_(
            stock.c.low_stock_cycle >= 1,
            stock.c.above_low.is_not(True),
            available > 0,
            available <= threshold,
            episode_since_added("low_stock", stock.c.low_stock_cycle),
        )
        episode_number = stock.c.low_stock_cycle
        rule = [
            (~func.coalesce(triggered, False), "not_triggered"),
            (_ledger_episode(ledger_has, ri, "low:", episode_number), "already_sent"),
        ]
        relevance = available
    else:
        since = now - params.reminder_interval
        rule = [
            (
                ledger_has(ledger.c.episode.like("reminder:%"), ledger.c.created_at > since),
                "cooldown",
            )
        ]
        relevance = literal(0)
    has_variant_reference = ri.c.item_variant_id.is_not(None) | ri.c.item_variant_ref.is_not(None)
    known = ri.c.variant_id.is_not(None) | (~has_variant_reference & ri.c.product_id.is_not(None))
    gates: list[tuple[ColumnElement[bool], str]] = [
        (ri.c.customer_id.is_(None), "customer_unknown"),
        (func.coalesce(ri.c.customer_deleted, False), "customer_deleted"),
        (func.coalesce(ri.c.customer_email, "") == "", "no_email"),
        (~ri.c.customer_consent, "no_consent"),
        (ri.c.item_deleted | func.coalesce(ri.c.wishlist_deleted, False), "item_deleted"),
        (ri.c.purchased, "purchased"),
        (ri.c.disable_notification, "notification_disabled"),
        (~known, "product_unknown"),
        (ri.c.unavailable, "product_unavailable"),
        *rule,
    ]
    reason = case(*[(condition, literal(name)) for condition, name in gates], else_=null())
    return (
        select(
            ri,
            reason.label("reason"),
            relevance.label("relevance"),
            episode_number.label("episode_number"),
            price_level.label("price_level"),
            threshold.label("stock_threshold"),
        )
        .select_from(
            ri.outerjoin(
                stock, and_(stock.c.tenant == tenant, stock.c.variant_id == ri.c.sellable_id)
            )
        )
        .cte("evaluated")
    )


def _ledger_episode(
    ledger_has: Any, ri: Subquery, prefix: str, number: ColumnElement[Any]
) -> ColumnElement[bool]:
    ledger = notification_ledger_table
    episode = literal(prefix, String()) + cast(number, String())
    return ledger_has(ledger.c.item_id == ri.c.item_id, ledger.c.episode == episode)


ITEM = "item"
COUNT = "count"


def run_query(tenant: str, params: RuleParameters, now: datetime) -> Select[Any]:
    """One pass over the tenant's items (the classification is a CTE read twice, which both
    databases materialise once), two kinds of rows (``row_kind``):

    * ``count``: items per (customer, reason), reason null = eligible;
    * ``item``: the eligible items, at most ``items_per_message`` per customer, ranked most
      relevant first (``rank``), ordered by customer.
    """
    evaluated = _evaluated(tenant, params, now)
    rank = (
        func.row_number()
        .over(
            partition_by=evaluated.c.customer_id,
            order_by=(
                evaluated.c.relevance,
                evaluated.c.item_created_time.desc().nulls_last(),
                evaluated.c.item_id,
            ),
        )
        .label("rank")
    )
    ranked = select(evaluated, rank).where(evaluated.c.reason.is_(None)).subquery("ranked")
    items = select(
        literal(ITEM).label("row_kind"),
        literal(1).label("items"),
        *ranked.c,
    ).where(ranked.c.rank <= bindparam("cap", params.items_per_message, Integer()))
    shared = {"customer_id": evaluated.c.customer_id, "reason": evaluated.c.reason}
    counts = select(
        literal(COUNT).label("row_kind"),
        func.count().label("items"),
        *[shared.get(column.name, null()).label(column.name) for column in ranked.c],
    ).group_by(evaluated.c.customer_id, evaluated.c.reason)
    combined = union_all(items, counts).subquery("run")
    return select(combined).order_by(combined.c.row_kind, combined.c.customer_id, combined.c.rank)

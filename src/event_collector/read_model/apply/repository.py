"""The queries the apply rules run (tenant-scoped), uncached; see :mod:`.caching_repository`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, and_, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from event_collector.kit.db import AnyConnection
from event_collector.models import (
    customer_table,
    price_history_table,
    price_table,
    product_table,
    read_model_problem_table,
    stock_episode_table,
    stock_history_table,
    stock_level_table,
    stock_table,
    variant_table,
    wishlist_item_table,
    wishlist_table,
)
from event_collector.read_model.items import id_by_ref, product_id_of
from event_collector.read_model.repository import Row

ENTITY_TABLES: dict[str, Table] = {
    "CUSTOMER": customer_table,
    "WISHLIST": wishlist_table,
    "WISHLIST_ITEM": wishlist_item_table,
    "PRODUCT": product_table,
    "VARIANT_PRODUCT": variant_table,
    "PRICE": price_table,
    "INVENTORY_LEVEL": stock_level_table,
}

# Columns that identify a row by the entity's own id when a DELETE carries no payload.
_ID_COLUMN = {"PRICE": "price_id", "INVENTORY_LEVEL": "level_id"}


def _key_clause(table: Table, tenant: str, key: Mapping[str, Any]) -> ColumnElement[bool]:
    return and_(table.c.tenant == tenant, *(table.c[name] == value for name, value in key.items()))


# A row matches when each of these columns holds the value (None: the column is NULL).
ItemMatch = Mapping[str, str | None]


def _matching(table: Table, match: ItemMatch) -> ColumnElement[bool]:
    return and_(
        *(
            table.c[name].is_(None) if value is None else table.c[name] == value
            for name, value in match.items()
        )
    )


def matches(row: Mapping[str, Any], match: ItemMatch) -> bool:
    """:func:`_matching` on a row in memory (the caching repository's copy of the rows)."""
    # A loop rather than all(<generator>), which costs twice as much: this runs per cached row.
    for name, value in match.items():  # noqa: SIM110
        if row[name] != value:
            return False
    return True


_CHUNK = 400


def pk_names(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.primary_key.columns if c.name != "tenant")


def chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class ApplyRepository:
    """The apply rules' queries, one statement each; subclassed by the caching unit of work."""

    def __init__(self, conn: AnyConnection) -> None:
        self.conn = conn

    # --- generic entity rows -----------------------------------------------------------------

    async def get(self, table: Table, tenant: str, key: Mapping[str, Any]) -> Row | None:
        statement = select(table).where(_key_clause(table, tenant, key)).with_for_update()
        row = (await self.conn.execute(statement)).first()
        return dict(row._mapping) if row else None

    async def insert(self, table: Table, values: Mapping[str, Any]) -> None:
        await self.conn.execute(insert(table).values(**values))

    async def update(
        self, table: Table, tenant: str, key: Mapping[str, Any], values: Mapping[str, Any]
    ) -> None:
        await self.conn.execute(update(table).where(_key_clause(table, tenant, key)).values(values))

    async def keys_by_entity_id(
        self, entity_type: str, tenant: str, entity_id: str
    ) -> list[dict[str, Any]]:
        """The keys of the rows an entity id names (for DELETEs without a payload)."""
        table = ENTITY_TABLES[entity_type]
        column = _ID_COLUMN.get(entity_type)
        if column is None:
            return [{"id": entity_id}]
        key_columns = [c for c in table.primary_key.columns if c.name != "tenant"]
        result = await self.conn.execute(
            select(*key_columns).where(table.c.tenant == tenant, table.c[column] == entity_id)
        )
        return [dict(row._mapping) for row in result]

    # --- lookups used by the apply rules ----------------------------------------------------

    async def sellable_facts(self, tenant: str, sellable_id: str) -> Row | None:
        """What stock derivation needs about a variant (or a product sold as is): its
        ``total_stock`` and the thresholds of the variant and of its product."""
        return (await self.sellable_facts_many(tenant, [sellable_id]))[sellable_id]

    async def sellable_facts_many(
        self, tenant: str, sellable_ids: Sequence[str]
    ) -> dict[str, Row | None]:
        v, p = variant_table.c, product_table.c
        facts: dict[str, Row | None] = {}
        for chunk in chunks(sellable_ids):
            result = await self.conn.execute(
                select(
                    v.id,
                    v.total_stock,
                    v.low_stock_threshold.label("low"),
                    v.back_in_stock_threshold.label("bis"),
                    p.low_stock_threshold.label("product_low"),
                    p.back_in_stock_threshold.label("product_bis"),
                )
                .select_from(
                    variant_table.outerjoin(
                        product_table,
                        and_(
                            p.tenant == tenant,
                            p.id == product_id_of(tenant, v.base_product_id, v.base_product_ref),
                        ),
                    )
                )
                .where(v.tenant == tenant, v.id.in_(chunk))
            )
            facts.update((row.id, dict(row._mapping)) for row in result)
        others = [sid for sid in sellable_ids if sid not in facts]
        for chunk in chunks(others):
            result = await self.conn.execute(
                select(
                    p.id,
                    p.total_stock,
                    p.low_stock_threshold.label("low"),
                    p.back_in_stock_threshold.label("bis"),
                ).where(p.tenant == tenant, p.id.in_(chunk))
            )
            facts.update((row.id, dict(row._mapping)) for row in result)
        for sid in sellable_ids:
            facts.setdefault(sid, None)
        return facts

    async def variant_ref(self, tenant: str, variant_id: str) -> str | None:
        result = await self.conn.execute(
            select(variant_table.c.ref).where(
                variant_table.c.tenant == tenant, variant_table.c.id == variant_id
            )
        )
        return result.scalar_one_or_none()

    async def variant_ids_of(self, tenant: str, product: Mapping[str, Any]) -> list[str]:
        t = variant_table.c
        conditions: list[ColumnElement[bool]] = [t.base_product_id == product["id"]]
        if product.get("ref"):
            conditions.append(t.base_product_ref == product["ref"])
        result = await self.conn.execute(
            select(t.id).where(t.tenant == tenant, or_(*conditions)).order_by(t.id)
        )
        return [row.id for row in result]

    async def current_price(self, tenant: str, sellable_id: str) -> Row | None:
        """The live price of a variant: the most recently written currency with a price."""
        row = (
            await self.conn.execute(
                select(price_table)
                .where(
                    price_table.c.tenant == tenant,
                    price_table.c.variant_id == sellable_id,
                    price_table.c.effective_price.is_not(None),
                )
                .order_by(price_table.c.last_seq.desc(), price_table.c.currency)
                .limit(1)
            )
        ).first()
        return dict(row._mapping) if row else None

    async def set_missing_baselines(
        self,
        tenant: str,
        targets: Sequence[ItemMatch],
        *,
        price: Decimal,
        currency: str,
        seq: int,
    ) -> None:
        """Give the items matching one of ``targets`` that have no baseline yet this one."""
        t = wishlist_item_table.c
        await self.conn.execute(
            update(wishlist_item_table)
            .where(
                t.tenant == tenant,
                t.baseline_price.is_(None),
                or_(*(_matching(wishlist_item_table, target) for target in targets)),
            )
            .values(baseline_price=price, baseline_currency=currency, baseline_seq=seq)
        )

    async def variant_by_ref(self, tenant: str, ref: str) -> Row | None:
        statement = select(variant_table).where(
            variant_table.c.tenant == tenant,
            variant_table.c.id == id_by_ref(variant_table, tenant, ref),
        )
        row = (await self.conn.execute(statement)).first()
        return dict(row._mapping) if row else None

    async def live_levels(self, tenant: str, variant_id: str) -> list[Row]:
        result = await self.conn.execute(
            select(stock_level_table).where(
                stock_level_table.c.tenant == tenant,
                stock_level_table.c.variant_id == variant_id,
                stock_level_table.c.deleted.is_(False),
            )
        )
        return [dict(row._mapping) for row in result]

    async def get_stock(self, tenant: str, variant_id: str) -> Row | None:
        return await self.get(stock_table, tenant, {"variant_id": variant_id})

    async def save_stock(self, values: Row, *, exists: bool) -> None:
        if exists:
            key = {"variant_id": values["variant_id"]}
            await self.update(stock_table, values["tenant"], key, values)
        else:
            await self.insert(stock_table, values)

    async def add_stock_history(self, values: Row) -> None:
        await self.insert(stock_history_table, values)

    async def add_stock_episode(self, values: Row) -> None:
        await self.insert(stock_episode_table, values)

    async def add_price_history(self, values: Row) -> None:
        await self.insert(price_history_table, values)

    async def add_problems(self, rows: Sequence[Row]) -> None:
        if rows:
            await self.conn.execute(insert(read_model_problem_table), list(rows))

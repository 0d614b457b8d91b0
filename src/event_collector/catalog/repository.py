"""Every query on the read-model tables. Tenant scoping is applied here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from event_collector.models import (
    CATALOG_TABLES,
    customer_table,
    event_table,
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

Row = dict[str, Any]

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


class CatalogRepository:
    def __init__(self, conn: AsyncConnection) -> None:
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

    async def variant_or_product(
        self, tenant: str, sellable_id: str
    ) -> tuple[Row | None, Row | None]:
        """The variant with this id (and its base product), else the product with this id."""
        variant = (
            await self.conn.execute(
                select(variant_table).where(
                    variant_table.c.tenant == tenant, variant_table.c.id == sellable_id
                )
            )
        ).first()
        if variant is not None:
            v = dict(variant._mapping)
            return v, await self.product_of(tenant, v)
        product = (
            await self.conn.execute(
                select(product_table).where(
                    product_table.c.tenant == tenant, product_table.c.id == sellable_id
                )
            )
        ).first()
        return None, dict(product._mapping) if product else None

    async def sellable_facts(self, tenant: str, sellable_id: str) -> Row | None:
        """What stock derivation needs about a variant (or a product sold as is), in one query:
        ``total_stock`` and the thresholds of the variant and of its product."""
        v, p = variant_table.c, product_table.c
        rows = (
            await self.conn.execute(
                select(
                    v.total_stock,
                    v.low_stock_threshold.label("low"),
                    v.back_in_stock_threshold.label("bis"),
                    v.base_product_id,
                    p.id.label("product_id"),
                    p.low_stock_threshold.label("product_low"),
                    p.back_in_stock_threshold.label("product_bis"),
                )
                .select_from(
                    variant_table.outerjoin(
                        product_table,
                        and_(
                            p.tenant == v.tenant,
                            or_(p.id == v.base_product_id, p.ref == v.base_product_ref),
                        ),
                    )
                )
                .where(v.tenant == tenant, v.id == sellable_id)
            )
        ).all()
        if rows:
            by_id = [
                r for r in rows if r.product_id is not None and r.product_id == r.base_product_id
            ]
            return dict((by_id or sorted(rows, key=lambda r: str(r.product_id)))[0]._mapping)
        row = (
            await self.conn.execute(
                select(
                    p.total_stock,
                    p.low_stock_threshold.label("low"),
                    p.back_in_stock_threshold.label("bis"),
                ).where(p.tenant == tenant, p.id == sellable_id)
            )
        ).first()
        return dict(row._mapping) if row else None

    async def variant_ref(self, tenant: str, variant_id: str) -> str | None:
        result = await self.conn.execute(
            select(variant_table.c.ref).where(
                variant_table.c.tenant == tenant, variant_table.c.id == variant_id
            )
        )
        return result.scalar_one_or_none()

    async def product_of(self, tenant: str, variant: Mapping[str, Any]) -> Row | None:
        conditions = []
        if variant.get("base_product_id"):
            conditions.append(product_table.c.id == variant["base_product_id"])
        if variant.get("base_product_ref"):
            conditions.append(product_table.c.ref == variant["base_product_ref"])
        if not conditions:
            return None
        rows = (
            await self.conn.execute(
                select(product_table).where(product_table.c.tenant == tenant, or_(*conditions))
            )
        ).all()
        if not rows:
            return None
        by_id = [r for r in rows if r.id == variant.get("base_product_id")]
        return dict((by_id or rows)[0]._mapping)

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
                .order_by(price_table.c.last_seq.desc())
                .limit(1)
            )
        ).first()
        return dict(row._mapping) if row else None

    async def set_missing_baselines(
        self,
        tenant: str,
        *,
        sellable_id: str,
        variant_ref: str | None,
        price: Decimal,
        currency: str,
        seq: int,
    ) -> None:
        """Give the items that point at this variant (by id, or by ref only, or at a product
        without a variant) and have no baseline yet this price as their baseline."""
        t = wishlist_item_table.c
        targets = [
            t.variant_id == sellable_id,
            and_(t.variant_id.is_(None), t.variant_ref.is_(None), t.product_id == sellable_id),
        ]
        if variant_ref:
            targets.append(and_(t.variant_id.is_(None), t.variant_ref == variant_ref))
        await self.conn.execute(
            update(wishlist_item_table)
            .where(t.tenant == tenant, t.baseline_price.is_(None), or_(*targets))
            .values(baseline_price=price, baseline_currency=currency, baseline_seq=seq)
        )

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

    # --- the read API ------------------------------------------------------------------------

    async def _one_by_id_or_ref(self, table: Table, tenant: str, id_or_ref: str) -> Row | None:
        row = (
            await self.conn.execute(
                select(table).where(table.c.tenant == tenant, table.c.id == id_or_ref)
            )
        ).first()
        if row is None:
            row = (
                await self.conn.execute(
                    select(table)
                    .where(table.c.tenant == tenant, table.c.ref == id_or_ref)
                    .order_by(table.c.deleted, table.c.id)
                    .limit(1)
                )
            ).first()
        return dict(row._mapping) if row else None

    async def variant_by_ref(self, tenant: str, ref: str) -> Row | None:
        row = (
            await self.conn.execute(
                select(variant_table)
                .where(variant_table.c.tenant == tenant, variant_table.c.ref == ref)
                .order_by(variant_table.c.deleted, variant_table.c.id)
                .limit(1)
            )
        ).first()
        return dict(row._mapping) if row else None

    async def customer(self, tenant: str, id_or_ref: str) -> Row | None:
        return await self._one_by_id_or_ref(customer_table, tenant, id_or_ref)

    async def variant(self, tenant: str, id_or_ref: str) -> Row | None:
        return await self._one_by_id_or_ref(variant_table, tenant, id_or_ref)

    async def product(self, tenant: str, id_or_ref: str) -> Row | None:
        return await self._one_by_id_or_ref(product_table, tenant, id_or_ref)

    async def wishlists_of(self, tenant: str, customer: Mapping[str, Any]) -> list[Row]:
        t = wishlist_table.c
        conditions: list[ColumnElement[bool]] = [t.customer_id == customer["id"]]
        if customer.get("ref"):
            conditions.append(and_(t.customer_id.is_(None), t.customer_ref == customer["ref"]))
        result = await self.conn.execute(
            select(wishlist_table).where(t.tenant == tenant, or_(*conditions)).order_by(t.first_seq)
        )
        return [dict(row._mapping) for row in result]

    async def items_of(self, tenant: str, wishlists: Sequence[Mapping[str, Any]]) -> list[Row]:
        if not wishlists:
            return []
        t = wishlist_item_table.c
        ids = [w["id"] for w in wishlists]
        refs = [w["ref"] for w in wishlists if w.get("ref")]
        conditions: list[ColumnElement[bool]] = [t.wishlist_id.in_(ids)]
        if refs:
            conditions.append(and_(t.wishlist_id.is_(None), t.wishlist_ref.in_(refs)))
        result = await self.conn.execute(
            select(wishlist_item_table)
            .where(t.tenant == tenant, or_(*conditions))
            .order_by(t.first_seq)
        )
        return [dict(row._mapping) for row in result]

    async def variants_for(self, tenant: str, ids: Iterable[str], refs: Iterable[str]) -> list[Row]:
        ids, refs = list(set(ids)), list(set(refs))
        if not ids and not refs:
            return []
        t = variant_table.c
        result = await self.conn.execute(
            select(variant_table).where(t.tenant == tenant, or_(t.id.in_(ids), t.ref.in_(refs)))
        )
        return [dict(row._mapping) for row in result]

    async def products_for(self, tenant: str, ids: Iterable[str], refs: Iterable[str]) -> list[Row]:
        ids, refs = list(set(ids)), list(set(refs))
        if not ids and not refs:
            return []
        t = product_table.c
        result = await self.conn.execute(
            select(product_table).where(t.tenant == tenant, or_(t.id.in_(ids), t.ref.in_(refs)))
        )
        return [dict(row._mapping) for row in result]

    async def prices_for(self, tenant: str, sellable_ids: Iterable[str]) -> list[Row]:
        ids = list(set(sellable_ids))
        if not ids:
            return []
        result = await self.conn.execute(
            select(price_table)
            .where(price_table.c.tenant == tenant, price_table.c.variant_id.in_(ids))
            .order_by(price_table.c.currency)
        )
        return [dict(row._mapping) for row in result]

    async def stocks_for(self, tenant: str, sellable_ids: Iterable[str]) -> list[Row]:
        ids = list(set(sellable_ids))
        if not ids:
            return []
        result = await self.conn.execute(
            select(stock_table).where(
                stock_table.c.tenant == tenant, stock_table.c.variant_id.in_(ids)
            )
        )
        return [dict(row._mapping) for row in result]

    async def levels_for(self, tenant: str, sellable_id: str) -> list[Row]:
        result = await self.conn.execute(
            select(stock_level_table)
            .where(
                stock_level_table.c.tenant == tenant,
                stock_level_table.c.variant_id == sellable_id,
            )
            .order_by(stock_level_table.c.location)
        )
        return [dict(row._mapping) for row in result]

    async def price_history(self, tenant: str, sellable_id: str, limit: int) -> list[Row]:
        t = price_history_table.c
        result = await self.conn.execute(
            select(price_history_table)
            .where(t.tenant == tenant, t.variant_id == sellable_id)
            .order_by(t.id.desc())
            .limit(limit)
        )
        return [dict(row._mapping) for row in result][::-1]

    async def stock_history(self, tenant: str, sellable_id: str, limit: int) -> list[Row]:
        t = stock_history_table.c
        result = await self.conn.execute(
            select(stock_history_table)
            .where(t.tenant == tenant, t.variant_id == sellable_id)
            .order_by(t.id.desc())
            .limit(limit)
        )
        return [dict(row._mapping) for row in result][::-1]

    async def stock_episodes(self, tenant: str, sellable_id: str, limit: int) -> list[Row]:
        t = stock_episode_table.c
        result = await self.conn.execute(
            select(stock_episode_table)
            .where(t.tenant == tenant, t.variant_id == sellable_id)
            .order_by(t.id.desc())
            .limit(limit)
        )
        return [dict(row._mapping) for row in result][::-1]

    async def problems(self, tenant: str, *, after_id: int | None, limit: int) -> list[Row]:
        t = read_model_problem_table.c
        statement = select(read_model_problem_table).where(t.tenant == tenant)
        if after_id is not None:
            statement = statement.where(t.id > after_id)
        result = await self.conn.execute(statement.order_by(t.id).limit(limit))
        return [dict(row._mapping) for row in result]

    # --- rebuild -----------------------------------------------------------------------------

    async def clear(self, tenant: str | None) -> None:
        for table in CATALOG_TABLES:
            statement = delete(table)
            if tenant is not None:
                statement = statement.where(table.c.tenant == tenant)
            await self.conn.execute(statement)

    async def count_events(self, tenant: str | None) -> int:
        statement = select(func.count()).select_from(event_table)
        if tenant is not None:
            statement = statement.where(event_table.c.tenant == tenant)
        return int((await self.conn.execute(statement)).scalar_one())

    async def dump(self, tenant: str) -> dict[str, list[Row]]:
        """Every read-model row of a tenant, in a stable order (tests, rebuild checks)."""
        dumped: dict[str, list[Row]] = {}
        for table in CATALOG_TABLES:
            order = [c for c in table.primary_key.columns if c.name != "tenant"]
            result = await self.conn.execute(
                select(table).where(table.c.tenant == tenant).order_by(*order)
            )
            dumped[table.name] = [dict(row._mapping) for row in result]
        return dumped


def changed(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], names: Iterable[str]
) -> bool:
    if before is None:
        return True
    return any(before.get(name) != after.get(name) for name in names)

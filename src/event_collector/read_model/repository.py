"""The read API's and the rebuild's queries on the read-model tables (tenant-scoped); the
apply path's are in ``apply/repository.py``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, String, Table, and_, delete, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement

from event_collector.kit.db import AnyConnection
from event_collector.models import (
    READ_MODEL_TABLES,
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
    wishlist_table,
)
from event_collector.read_model.items import (
    DESCRIPTION_FIELDS,
    id_by_ref,
    marketing_consent,
    product_id_of,
    resolved_items,
    source_of,
    variant_then_product,
)

Row = dict[str, Any]


class ReadModelRepository:
    """The read API's queries, the rebuild's and a dump for tests."""

    def __init__(self, conn: AnyConnection) -> None:
        self.conn = conn

    async def product_of(self, tenant: str, variant: Mapping[str, Any]) -> Row | None:
        """The variant's product (:func:`items.product_id_of`)."""
        if not (variant.get("base_product_id") or variant.get("base_product_ref")):
            return None
        product_id = product_id_of(
            tenant,
            literal(variant.get("base_product_id"), String()),
            literal(variant.get("base_product_ref"), String()),
        )
        statement = select(product_table).where(
            product_table.c.tenant == tenant, product_table.c.id == product_id
        )
        row = (await self.conn.execute(statement)).first()
        return dict(row._mapping) if row else None

    async def _one_by_id_or_ref(
        self, table: Table, tenant: str, id_or_ref: str, statement: Select[Any] | None = None
    ) -> Row | None:
        """The row of ``table`` with this id, else the one with this ref (:func:`items.id_by_ref`);
        ``statement`` selects other columns than ``select(table)`` (from ``table`` or a join)."""
        base = select(table) if statement is None else statement
        for key in (id_or_ref, id_by_ref(table, tenant, id_or_ref)):
            found = base.where(table.c.tenant == tenant, table.c.id == key)
            row = (await self.conn.execute(found)).first()
            if row is not None:
                return dict(row._mapping)
        return None

    async def customer(self, tenant: str, id_or_ref: str) -> Row | None:
        """The customer, with its ``marketing_consent`` (:func:`items.marketing_consent`)."""
        consent = marketing_consent().label("marketing_consent")
        statement = select(customer_table, consent)
        return await self._one_by_id_or_ref(customer_table, tenant, id_or_ref, statement)

    async def variant(self, tenant: str, id_or_ref: str) -> Row | None:
        """The variant, its ``title``, ``link`` and ``image_link`` each its own else its product's
        (:func:`items.variant_then_product`, as for resolved items) and ``<field>_source``
        saying which (:func:`items.source_of`)."""
        variant = variant_table
        product = product_table.alias("product")
        product_id = product_id_of(tenant, variant.c.base_product_id, variant.c.base_product_ref)
        joined = variant.outerjoin(
            product, (product.c.tenant == tenant) & (product.c.id == product_id)
        )
        columns: list[ColumnElement[Any]] = [
            column for column in variant.c if column.name not in DESCRIPTION_FIELDS
        ]
        for name in DESCRIPTION_FIELDS:
            columns.append(variant_then_product(variant, product, name).label(name))
            columns.append(source_of(variant, product, name).label(f"{name}_source"))
        statement = select(*columns).select_from(joined)
        return await self._one_by_id_or_ref(variant_table, tenant, id_or_ref, statement)

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

    async def resolved_items_of(
        self, tenant: str, wishlists: Sequence[Mapping[str, Any]]
    ) -> list[Row]:
        """The resolved items (:func:`items.resolved_items`) of these wishlists, oldest first."""
        if not wishlists:
            return []
        items = resolved_items(tenant)
        ids = [w["id"] for w in wishlists]
        refs = [w["ref"] for w in wishlists if w.get("ref")]
        # Narrowed on the item's own columns first, so the indexes on them are used.
        named: list[ColumnElement[bool]] = [items.c.item_wishlist_id.in_(ids)]
        if refs:
            named.append(
                and_(items.c.item_wishlist_id.is_(None), items.c.item_wishlist_ref.in_(refs))
            )
        result = await self.conn.execute(
            select(items)
            .where(or_(*named), items.c.wishlist_id.in_(ids))
            .order_by(items.c.item_first_seq)
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
        return await self._latest(price_history_table, tenant, sellable_id, limit)

    async def stock_history(self, tenant: str, sellable_id: str, limit: int) -> list[Row]:
        return await self._latest(stock_history_table, tenant, sellable_id, limit)

    async def stock_episodes(self, tenant: str, sellable_id: str, limit: int) -> list[Row]:
        return await self._latest(stock_episode_table, tenant, sellable_id, limit)

    async def _latest(self, table: Table, tenant: str, sellable_id: str, limit: int) -> list[Row]:
        """The newest ``limit`` rows of a per-variant history table, oldest first."""
        result = await self.conn.execute(
            select(table)
            .where(table.c.tenant == tenant, table.c.variant_id == sellable_id)
            .order_by(table.c.id.desc())
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
        for table in READ_MODEL_TABLES:
            statement = delete(table)
            if tenant is not None:
                statement = statement.where(table.c.tenant == tenant)
            await self.conn.execute(statement)

    async def dump(self, tenant: str) -> dict[str, list[Row]]:
        """Every read-model row of a tenant, in a stable order (tests, rebuild checks)."""
        dumped: dict[str, list[Row]] = {}
        for table in READ_MODEL_TABLES:
            order = [c for c in table.primary_key.columns if c.name != "tenant"]
            result = await self.conn.execute(
                select(table).where(table.c.tenant == tenant).order_by(*order)
            )
            dumped[table.name] = [dict(row._mapping) for row in result]
        return dumped

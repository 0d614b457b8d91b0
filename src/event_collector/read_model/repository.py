"""Every query on the read-model tables. Tenant scoping is applied here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from event_collector.kit.db import AnyConnection
from event_collector.models import (
    READ_MODEL_TABLES,
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
from event_collector.read_model.items import marketing_consent, resolved_items

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


_CHUNK = 400


def _pk_names(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.primary_key.columns if c.name != "tenant")


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class ReadModelRepository:
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
        by_variant: dict[str, list[Row]] = {}
        for chunk in _chunks(sellable_ids):
            result = await self.conn.execute(
                select(
                    v.id,
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
                .where(v.tenant == tenant, v.id.in_(chunk))
            )
            for row in result:
                by_variant.setdefault(row.id, []).append(dict(row._mapping))
        facts: dict[str, Row | None] = {}
        for vid, rows in by_variant.items():
            by_id = [r for r in rows if r["product_id"] and r["product_id"] == r["base_product_id"]]
            facts[vid] = (by_id or sorted(rows, key=lambda r: str(r["product_id"])))[0]
        others = [sid for sid in sellable_ids if sid not in facts]
        for chunk in _chunks(others):
            result = await self.conn.execute(
                select(
                    p.id,
                    p.total_stock,
                    p.low_stock_threshold.label("low"),
                    p.back_in_stock_threshold.label("bis"),
                ).where(p.tenant == tenant, p.id.in_(chunk))
            )
            for row in result:
                facts[row.id] = dict(row._mapping)
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
                .order_by(price_table.c.last_seq.desc(), price_table.c.currency)
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

    async def _one_by_id_or_ref(
        self, table: Table, tenant: str, id_or_ref: str, *extra: ColumnElement[Any]
    ) -> Row | None:
        """The row with this id, else the one with this ref; ``extra`` columns selected too."""
        row = (
            await self.conn.execute(
                select(table, *extra).where(table.c.tenant == tenant, table.c.id == id_or_ref)
            )
        ).first()
        if row is None:
            return await self._one_by_ref(table, tenant, id_or_ref, *extra)
        return dict(row._mapping)

    async def _one_by_ref(
        self, table: Table, tenant: str, ref: str, *extra: ColumnElement[Any]
    ) -> Row | None:
        """A live row with this ref before a deleted one (then the lowest id, to be stable)."""
        row = (
            await self.conn.execute(
                select(table, *extra)
                .where(table.c.tenant == tenant, table.c.ref == ref)
                .order_by(table.c.deleted, table.c.id)
                .limit(1)
            )
        ).first()
        return dict(row._mapping) if row else None

    async def variant_by_ref(self, tenant: str, ref: str) -> Row | None:
        return await self._one_by_ref(variant_table, tenant, ref)

    async def customer(self, tenant: str, id_or_ref: str) -> Row | None:
        """The customer, with its ``marketing_consent`` (:func:`items.marketing_consent`)."""
        consent = marketing_consent().label("marketing_consent")
        return await self._one_by_id_or_ref(customer_table, tenant, id_or_ref, consent)

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

    async def count_events(self, tenant: str | None) -> int:
        statement = select(func.count()).select_from(event_table)
        if tenant is not None:
            statement = statement.where(event_table.c.tenant == tenant)
        return int((await self.conn.execute(statement)).scalar_one())

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


_CACHED_TABLES = frozenset(
    t.name
    for t in (
        customer_table,
        wishlist_table,
        wishlist_item_table,
        product_table,
        variant_table,
        price_table,
        stock_level_table,
        stock_table,
    )
)
# Tables whose rows are also cached as complete lists per (tenant, variant id).
_LISTED_TABLES = frozenset({price_table.name, stock_level_table.name})


_APPEND_ONLY = frozenset(
    t.name
    for t in (
        price_history_table,
        stock_history_table,
        stock_episode_table,
        read_model_problem_table,
    )
)
_TABLES_BY_NAME = {t.name: t for t in READ_MODEL_TABLES}


class CachingReadModelRepository(ReadModelRepository):
    """The repository the apply path uses for one hook call (one unit of work).

    The rows a group of events will touch are read up front in a few queries
    (:meth:`prefetch`) and then served from memory; writes are kept in memory too and written
    by :meth:`flush` with one ``executemany`` per table. Any read that has to go to the
    database flushes first, so SQL always sees what was applied before it. Use one instance
    per transaction (or savepoint) and call :meth:`flush` before it ends.
    """

    def __init__(self, conn: AnyConnection) -> None:
        super().__init__(conn)
        self._rows: dict[tuple[str, str, tuple[Any, ...]], Row | None] = {}
        self._lists: dict[tuple[str, str, str], list[Row]] = {}
        self._facts: dict[tuple[str, str], Row | None] = {}
        # Unwritten changes: new rows, changed rows (both by cache key, in order), appends.
        self._new: dict[tuple[str, str, tuple[Any, ...]], Row] = {}
        self._dirty: dict[tuple[str, str, tuple[Any, ...]], Row] = {}
        self._appends: dict[str, list[Row]] = {}
        self.wrote = False  # whether anything reached the database yet
        self._baselines: list[dict[str, Any]] = []

    # cache plumbing

    def _ck(
        self, table: Table, tenant: str, key: Mapping[str, Any]
    ) -> tuple[str, str, tuple[Any, ...]]:
        return (table.name, tenant, tuple(key[name] for name in _pk_names(table)))

    def _remember(self, table: Table, row: Mapping[str, Any]) -> Row:
        cached = dict(row)
        self._rows[self._ck(table, cached["tenant"], cached)] = cached
        return cached

    def _remember_list(
        self, table: Table, tenant: str, variant_id: str, rows: Iterable[Row]
    ) -> list[Row]:
        listed = [self._remember(table, row) for row in rows]
        self._lists[(table.name, tenant, variant_id)] = listed
        return listed

    async def flush(self) -> None:
        """Write the pending changes: per table one executemany for inserts and one for
        updates (full rows by primary key)."""
        new, dirty, appends = self._new, self._dirty, self._appends
        baselines, self._baselines = self._baselines, []
        self._new, self._dirty, self._appends = {}, {}, {}
        self.wrote = self.wrote or bool(new or dirty or appends or baselines)
        for baseline in baselines:
            await ReadModelRepository.set_missing_baselines(
                self,
                baseline["tenant"],
                sellable_id=baseline["sellable_id"],
                variant_ref=baseline["variant_ref"],
                price=baseline["price"],
                currency=baseline["currency"],
                seq=baseline["seq"],
            )
        inserts: dict[str, list[Row]] = {}
        for (table_name, _tenant, _key), row in new.items():
            inserts.setdefault(table_name, []).append(row)
        for table_name, rows in appends.items():
            inserts.setdefault(table_name, []).extend(rows)
        for table_name, rows in inserts.items():
            if not rows:
                continue
            table = _TABLES_BY_NAME[table_name]
            names = [
                c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)
            ]
            await self.conn.execute(
                insert(table), [{name: row.get(name) for name in names} for row in rows]
            )
        updates: dict[str, list[Row]] = {}
        for (table_name, _tenant, _key), row in dirty.items():
            updates.setdefault(table_name, []).append(row)
        for table_name, rows in updates.items():
            table = _TABLES_BY_NAME[table_name]
            keys = _pk_names(table)
            names = [c.name for c in table.columns if c.name not in keys and c.name != "tenant"]
            statement = update(table).where(
                table.c.tenant == bindparam("k_tenant"),
                *(table.c[key] == bindparam(f"k_{key}") for key in keys),
            )
            await self.conn.execute(
                statement,
                [
                    {
                        "k_tenant": row["tenant"],
                        **{f"k_{key}": row[key] for key in keys},
                        **{name: row.get(name) for name in names},
                    }
                    for row in rows
                ],
            )

    async def _flushed(self) -> None:
        if self._new or self._dirty or self._appends or self._baselines:
            await self.flush()

    async def _list(self, table: Table, tenant: str, variant_id: str) -> list[Row]:
        listed = self._lists.get((table.name, tenant, variant_id))
        if listed is None:
            await self._flushed()
            result = await self.conn.execute(
                select(table)
                .where(table.c.tenant == tenant, table.c.variant_id == variant_id)
                .with_for_update()
            )
            listed = self._remember_list(
                table, tenant, variant_id, [dict(r._mapping) for r in result]
            )
        return listed

    async def prefetch(
        self,
        tenant: str,
        ids: Mapping[Table, set[str]],
        priced: set[str],
        stocked: set[str],
    ) -> None:
        """Read what applying a group will need: entity rows by id, the prices of the
        ``priced`` sellable ids (variant or product ids), and the stock levels, stock row and
        threshold facts of the ``stocked`` ones. Nothing else is read up front."""
        await self._flushed()
        for table, wanted in ids.items():
            pending = sorted(wanted)
            for chunk in _chunks(pending):
                result = await self.conn.execute(
                    select(table)
                    .where(table.c.tenant == tenant, table.c.id.in_(chunk))
                    .with_for_update()
                )
                for row in result:
                    self._remember(table, dict(row._mapping))
            for entity_id in pending:
                self._rows.setdefault((table.name, tenant, (entity_id,)), None)
        for table, wanted_ids in ((price_table, priced), (stock_level_table, stocked)):
            variant_ids = sorted(wanted_ids)
            grouped: dict[str, list[Row]] = {vid: [] for vid in variant_ids}
            for chunk in _chunks(variant_ids):
                result = await self.conn.execute(
                    select(table)
                    .where(table.c.tenant == tenant, table.c.variant_id.in_(chunk))
                    .with_for_update()
                )
                for row in result:
                    grouped[row.variant_id].append(dict(row._mapping))
            for vid, rows in grouped.items():
                self._remember_list(table, tenant, vid, rows)
        variant_ids = sorted(stocked)
        if not variant_ids:
            return
        for chunk in _chunks(variant_ids):
            result = await self.conn.execute(
                select(stock_table)
                .where(stock_table.c.tenant == tenant, stock_table.c.variant_id.in_(chunk))
                .with_for_update()
            )
            for row in result:
                self._remember(stock_table, dict(row._mapping))
        for vid in variant_ids:
            self._rows.setdefault((stock_table.name, tenant, (vid,)), None)
        for vid, facts in (await self.sellable_facts_many(tenant, variant_ids)).items():
            self._facts[(tenant, vid)] = facts

    # overrides: writes

    async def insert(self, table: Table, values: Mapping[str, Any]) -> None:
        if table.name in _APPEND_ONLY:
            self._appends.setdefault(table.name, []).append(dict(values))
            return
        if table.name not in _CACHED_TABLES:
            await self._flushed()
            self.wrote = True
            await super().insert(table, values)
            return
        cached = self._remember(table, values)
        self._new[self._ck(table, cached["tenant"], cached)] = cached
        if table.name in _LISTED_TABLES:
            listed = self._lists.get((table.name, cached["tenant"], cached["variant_id"]))
            if listed is not None:
                listed.append(cached)
        if table.name in (variant_table.name, product_table.name):
            self._facts.clear()

    async def update(
        self, table: Table, tenant: str, key: Mapping[str, Any], values: Mapping[str, Any]
    ) -> None:
        ck = self._ck(table, tenant, key)
        cached = self._rows.get(ck)
        if cached is None:
            await self._flushed()
            self.wrote = True
            await super().update(table, tenant, key, values)
        else:
            cached.update(values)  # in place: the per-variant lists hold the same dicts
            if ck not in self._new:
                self._dirty[ck] = cached
        if table.name in (variant_table.name, product_table.name):
            self._facts.clear()

    async def add_problems(self, rows: Sequence[Row]) -> None:
        if rows:
            self._appends.setdefault(read_model_problem_table.name, []).extend(rows)

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
        # Rows in the database: at flush time, before the pending rows are written (a cached
        # row is rewritten by the flush anyway) ...
        self._baselines.append(
            {
                "tenant": tenant,
                "sellable_id": sellable_id,
                "variant_ref": variant_ref,
                "price": price,
                "currency": currency,
                "seq": seq,
            }
        )
        # ... and the same rule on the cached rows, now.
        for (table_name, row_tenant, _key), row in self._rows.items():
            if table_name != wishlist_item_table.name or row_tenant != tenant or row is None:
                continue
            if row["baseline_price"] is not None:
                continue
            if (
                row["variant_id"] == sellable_id
                or (
                    row["variant_id"] is None
                    and row["variant_ref"] is None
                    and row["product_id"] == sellable_id
                )
                or (variant_ref and row["variant_id"] is None and row["variant_ref"] == variant_ref)
            ):
                row.update(baseline_price=price, baseline_currency=currency, baseline_seq=seq)

    # overrides: reads

    async def get(self, table: Table, tenant: str, key: Mapping[str, Any]) -> Row | None:
        if table.name not in _CACHED_TABLES:
            await self._flushed()
            return await super().get(table, tenant, key)
        ck = self._ck(table, tenant, key)
        if ck not in self._rows and table.name in _LISTED_TABLES:
            await self._list(table, tenant, key["variant_id"])
            self._rows.setdefault(ck, None)
        if ck not in self._rows:
            await self._flushed()
            row = await super().get(table, tenant, key)
            if row is None:
                self._rows[ck] = None
            else:
                self._remember(table, row)
        cached = self._rows[ck]
        return dict(cached) if cached is not None else None

    async def current_price(self, tenant: str, sellable_id: str) -> Row | None:
        live = [
            row
            for row in await self._list(price_table, tenant, sellable_id)
            if row["effective_price"] is not None
        ]
        if not live:
            return None
        live.sort(key=lambda row: row["currency"])
        return dict(max(live, key=lambda row: row["last_seq"]))

    async def live_levels(self, tenant: str, variant_id: str) -> list[Row]:
        return [
            dict(row)
            for row in await self._list(stock_level_table, tenant, variant_id)
            if not row["deleted"]
        ]

    async def sellable_facts(self, tenant: str, sellable_id: str) -> Row | None:
        key = (tenant, sellable_id)
        if key not in self._facts:
            await self._flushed()
            self._facts[key] = await super().sellable_facts(tenant, sellable_id)
        return self._facts[key]

    async def variant_ref(self, tenant: str, variant_id: str) -> str | None:
        ck = (variant_table.name, tenant, (variant_id,))
        if ck in self._rows:
            cached = self._rows[ck]
            return cached["ref"] if cached is not None else None
        # Not cached means not written in this unit of work: the database is current for it.
        return await super().variant_ref(tenant, variant_id)

    async def variant_by_ref(self, tenant: str, ref: str) -> Row | None:
        await self._flushed()
        return await super().variant_by_ref(tenant, ref)

    async def variant_ids_of(self, tenant: str, product: Mapping[str, Any]) -> list[str]:
        await self._flushed()
        return await super().variant_ids_of(tenant, product)

    async def keys_by_entity_id(
        self, entity_type: str, tenant: str, entity_id: str
    ) -> list[dict[str, Any]]:
        await self._flushed()
        return await super().keys_by_entity_id(entity_type, tenant, entity_id)


def changed(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], names: Iterable[str]
) -> bool:
    if before is None:
        return True
    return any(before.get(name) != after.get(name) for name in names)

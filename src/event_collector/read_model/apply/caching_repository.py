"""The apply path's unit of work: one hook call's rows read up front, changes written at the end."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update

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
    wishlist_item_table,
    wishlist_table,
)
from event_collector.read_model.apply.repository import (
    ApplyRepository,
    ItemMatch,
    chunks,
    matches,
    pk_names,
)
from event_collector.read_model.repository import Row

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


class CachingApplyRepository(ApplyRepository):
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
        return (table.name, tenant, tuple(key[name] for name in pk_names(table)))

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
            await ApplyRepository.set_missing_baselines(self, **baseline)
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
            keys = pk_names(table)
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
            for chunk in chunks(pending):
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
            for chunk in chunks(variant_ids):
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
        for chunk in chunks(variant_ids):
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
        targets: Sequence[ItemMatch],
        *,
        price: Decimal,
        currency: str,
        seq: int,
    ) -> None:
        # Rows in the database: at flush time, before the pending rows are written (a cached
        # row is rewritten by the flush anyway) ...
        self._baselines.append(
            {"tenant": tenant, "targets": targets, "price": price, "currency": currency, "seq": seq}
        )
        # ... and the same targets on the cached rows, now.
        for (table_name, row_tenant, _key), row in self._rows.items():
            if table_name != wishlist_item_table.name or row_tenant != tenant or row is None:
                continue
            if row["baseline_price"] is not None:
                continue
            for target in targets:
                if matches(row, target):
                    row.update(baseline_price=price, baseline_currency=currency, baseline_seq=seq)
                    break

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

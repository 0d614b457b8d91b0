"""Every query of the notification capability; tenant scoping is applied here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping

from event_collector.kit.db import AnyConnection
from event_collector.models.notifications import (
    email_settings_table,
    notification_ledger_table,
    notification_table,
)
from event_collector.models.read_model import stock_table

CHUNK = 1000
"""Rows per multi-row statement (well under both databases' bound-parameter limits)."""


def _chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class NotificationRepository:
    def __init__(self, conn: AnyConnection) -> None:
        self.conn = conn
        self._insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert

    async def run_customers(self, tenant: str, run_id: str) -> set[str]:
        """Customers who already have a notification in this run (a run taken over)."""
        n = notification_table
        rows = await self.conn.execute(
            select(n.c.customer_id).where(n.c.tenant == tenant, n.c.run_id == run_id).distinct()
        )
        return {row[0] for row in rows}

    async def claim_ledger(self, rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
        """Insert ledger rows; returns the (customer, item) pairs this call claimed, with their
        ledger ids. A row whose key another run (or scheduler) holds is left alone, so nothing
        is claimed twice."""
        ledger = notification_ledger_table
        claimed: dict[tuple[str, str], int] = {}
        for chunk in _chunks(rows):
            statement = (
                self._insert(ledger)
                .on_conflict_do_nothing(
                    index_elements=["tenant", "job_id", "customer_id", "item_id", "episode"]
                )
                .returning(ledger.c.customer_id, ledger.c.item_id, ledger.c.id)
            )
            result = await self.conn.execute(statement, list(chunk))
            claimed.update(((row[0], row[1]), row[2]) for row in result)
        return claimed

    async def insert_notifications(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> dict[tuple[str, str], int]:
        """Insert notifications; returns their ids by (customer, channel)."""
        n = notification_table
        ids: dict[tuple[str, str], int] = {}
        for chunk in _chunks(rows):
            result = await self.conn.execute(
                n.insert().returning(n.c.customer_id, n.c.channel, n.c.id), list(chunk)
            )
            ids.update(((row[0], row[1]), row[2]) for row in result)
        return ids

    async def link_ledger(self, tenant: str, links: Sequence[tuple[int, int]]) -> None:
        """Point ledger rows at their notification: (ledger id, notification id) pairs, updated
        by primary key. (A set-wise UPDATE joining the notifications was planned by PostgreSQL
        on their statistics from before the run, as a scan of the run's notifications per
        ledger row: quadratic in a large run.)"""
        ledger = notification_ledger_table
        statement = (
            update(ledger)
            .where(ledger.c.tenant == tenant, ledger.c.id == bindparam("ledger_id"))
            .values(notification_id=bindparam("notification_id"))
        )
        for chunk in _chunks(links):
            await self.conn.execute(
                statement,
                [{"ledger_id": lid, "notification_id": nid} for lid, nid in chunk],
            )

    async def lease_pending(
        self,
        tenant: str,
        job_id: str,
        channel: str,
        *,
        owner: str,
        until: datetime,
        now: datetime,
        limit: int,
    ) -> list[RowMapping]:
        """Lease up to ``limit`` unsent notifications of the job: pending ones, and ones whose
        sender's lease expired (left by a crashed run: the next run of the job sends them)."""
        n = notification_table
        due = and_(
            n.c.tenant == tenant,
            n.c.job_id == job_id,
            n.c.channel == channel,
            or_(
                n.c.status == "pending",
                and_(n.c.status == "sending", n.c.lease_until < now),
            ),
        )
        ids = select(n.c.id).where(due).order_by(n.c.id).limit(limit)
        if self.conn.dialect.name == "postgresql":
            ids = ids.with_for_update(skip_locked=True)
        # Two statements, not UPDATE ... WHERE id IN (subquery): right after a run stored its
        # notifications their statistics are stale, and PostgreSQL ran that subquery (a sort
        # of every pending notification) once per pending notification.
        chosen = list((await self.conn.execute(ids)).scalars())
        if not chosen:
            return []
        result = await self.conn.execute(
            update(n)
            .where(n.c.id.in_(chosen), due)
            .values(status="sending", lease_owner=owner, lease_until=until, updated_at=now)
            .returning(*n.c)
        )
        return sorted(result.mappings(), key=lambda row: row["id"])

    async def record_outcome(
        self, tenant: str, notification_ids: Sequence[int], owner: str, values: Mapping[str, Any]
    ) -> None:
        """The same outcome for these notifications (one statement per chunk: a SendGrid
        request's thousand notifications share theirs); only those ``owner`` still leases."""
        n = notification_table
        for chunk in _chunks(notification_ids):
            await self.conn.execute(
                update(n)
                .where(n.c.tenant == tenant, n.c.id.in_(chunk), n.c.lease_owner == owner)
                .values(
                    lease_owner=None, lease_until=None, attempts=n.c.attempts + 1, **dict(values)
                )
            )

    async def release_ledger(self, tenant: str, notification_ids: Sequence[int]) -> None:
        """Forget the claims of notifications that were certainly not sent (a later run may
        send those items)."""
        ledger = notification_ledger_table
        for chunk in _chunks(notification_ids):
            await self.conn.execute(
                delete(ledger).where(ledger.c.tenant == tenant, ledger.c.notification_id.in_(chunk))
            )

    async def available_stock(self, tenant: str, sellable_ids: Sequence[str]) -> dict[str, int]:
        s = stock_table
        found: dict[str, int] = {}
        for chunk in _chunks(sorted(set(sellable_ids))):
            rows = await self.conn.execute(
                select(s.c.variant_id, func.coalesce(s.c.available, 0)).where(
                    s.c.tenant == tenant, s.c.variant_id.in_(chunk)
                )
            )
            found.update({row[0]: int(row[1]) for row in rows})
        return found

    async def list_notifications(
        self,
        tenant: str,
        *,
        filters: Mapping[str, Any],
        after_id: int | None,
        limit: int,
    ) -> list[RowMapping]:
        n = notification_table
        query = select(n).where(n.c.tenant == tenant)
        for name, value in filters.items():
            if value is not None:
                query = query.where(n.c[name] == value)
        if after_id is not None:
            query = query.where(n.c.id > after_id)
        rows = await self.conn.execute(query.order_by(n.c.id).limit(limit))
        return list(rows.mappings())

    async def email_settings(self, tenant: str) -> RowMapping | None:
        e = email_settings_table
        row = await self.conn.execute(select(e).where(e.c.tenant == tenant))
        return row.mappings().first()

    async def save_email_settings(self, tenant: str, values: Mapping[str, Any]) -> None:
        e = email_settings_table
        row = {"tenant": tenant, **values}
        statement = self._insert(e).values(row)
        await self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant"],
                set_={k: statement.excluded[k] for k in values},
            )
        )

    async def sealed_email_settings_after(self, after: str | None, limit: int) -> list[Any]:
        """Every tenant's sealed SendGrid key, in tenant order: for re-sealing after a key
        rotation (an operator task across tenants)."""
        e = email_settings_table
        statement = select(e.c.tenant, e.c.sendgrid_api_key_sealed).where(
            e.c.sendgrid_api_key_sealed.is_not(None)
        )
        if after is not None:
            statement = statement.where(e.c.tenant > after)
        result = await self.conn.execute(statement.order_by(e.c.tenant).limit(limit))
        return list(result.all())

    async def replace_sealed_key(self, tenant: str, old: str, new: str) -> bool:
        """Swap the sealed SendGrid key unless a concurrent PUT changed it meanwhile."""
        e = email_settings_table
        result = await self.conn.execute(
            update(e)
            .where(e.c.tenant == tenant, e.c.sendgrid_api_key_sealed == old)
            .values(sendgrid_api_key_sealed=new)
        )
        return bool(result.rowcount)

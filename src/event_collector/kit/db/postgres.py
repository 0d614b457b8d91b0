"""The PostgreSQL backend: statements go to asyncpg through SQLAlchemy's DBAPI adapter, rows as
one array per column, so a statement costs one round trip whatever its number of rows.

Through the adapter, not the raw asyncpg connection: the adapter begins the transaction lazily,
at its first statement, so a statement sent to the raw connection first would run (and commit)
on its own, outside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql

from event_collector.kit.db.backend import Backend, BulkStatement, SelectT
from event_collector.kit.db.connection import AnyConnection


class PostgresBackend(Backend):
    name = "postgresql"
    listens = True

    def timestamp(self, value: datetime) -> object:
        return value

    async def bulk(
        self,
        conn: AnyConnection,
        statement: BulkStatement,
        rows: Sequence[Sequence[object]],
        scalars: Sequence[object] = (),
    ) -> list[tuple[Any, ...]]:
        if not rows:
            return []
        columns = tuple(map(list, zip(*rows, strict=True)))  # the rows transposed
        return await self._run(conn, statement.postgres, (*columns, *scalars))

    @staticmethod
    async def _run(
        conn: AnyConnection, sql: str, parameters: tuple[object, ...]
    ) -> list[tuple[Any, ...]]:
        result = await conn.exec_driver_sql(sql, parameters)
        return list(result.fetchall()) if result.returns_rows else []

    def skip_locked(self, query: SelectT, *of: Any) -> SelectT:
        return query.with_for_update(skip_locked=True, of=list(of) or None)

    def for_update(self, query: SelectT) -> SelectT:
        return query.with_for_update()

    async def insert_unless_exists(
        self, conn: AnyConnection, table: Table, values: dict[str, Any]
    ) -> bool:
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
        return bool((await conn.execute(statement)).rowcount)

    async def notify(self, conn: AnyConnection, channel: str) -> None:
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})

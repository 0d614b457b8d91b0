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

from sqlalchemy import BigInteger, ColumnElement, Table, literal_column, text
from sqlalchemy.dialects import postgresql

from event_collector.kit.db.backend import Backend, BulkStatement, SelectT
from event_collector.kit.db.connection import AnyConnection

# The feed's high-water mark: the oldest transaction still running in this database when the
# statement's snapshot was taken (else the next id to be assigned). Every transaction id below it
# has committed (its rows are in the snapshot) or rolled back, so nothing can appear below it
# later. Unlike the snapshot's xmin, transactions of other databases of the cluster (which never
# write our tables) do not hold it back: an id is skipped only when pg_stat_activity shows it
# running in another database; unknown ids (not visible to our role, already finished, prepared
# transactions) count, so the mark errs low (later), never high. The txid column it is compared
# with is the writing transaction's pg_current_xact_id() (migration 0007's server default).
_COMMIT_HIGH_WATER_MARK = literal_column(
    """(SELECT COALESCE(
        (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
         WHERE NOT EXISTS (SELECT FROM pg_stat_activity AS a
                           WHERE a.backend_xid = xid(x) AND a.datname <> current_database())),
        pg_snapshot_xmax(pg_current_snapshot()))::text::bigint)""",
    BigInteger,
)


class PostgresBackend(Backend):
    name = "postgresql"
    listens = True
    commits_out_of_order = True

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

    def below_commit_mark(self, query: SelectT, txid: ColumnElement[Any]) -> SelectT:
        return query.where(txid < _COMMIT_HIGH_WATER_MARK)

    async def insert_unless_exists(
        self, conn: AnyConnection, table: Table, values: dict[str, Any]
    ) -> bool:
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
        return bool((await conn.execute(statement)).rowcount)

    async def notify(self, conn: AnyConnection, channel: str) -> None:
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})

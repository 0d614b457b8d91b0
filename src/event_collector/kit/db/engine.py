"""Database engine and transactions, and the backend chosen for the database at start-up.

SQLite (the embedded default) and PostgreSQL (scale-out) are both first-class. Write transactions
go through :meth:`Database.write`: on SQLite they start with ``BEGIN IMMEDIATE`` and are serialised
by an in-process lock, so a transaction never fails half-way with "database is locked"; on
PostgreSQL they are plain transactions and row locks do the coordinating.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import await_

from event_collector.kit.db.backend import Backend
from event_collector.kit.db.connection import AnyConnection, InlineConnection
from event_collector.kit.db.faults import is_timeout, is_unavailable
from event_collector.kit.db.postgres import PostgresBackend
from event_collector.kit.db.sqlite import SQLiteBackend
from event_collector.kit.errors import DatabaseUnavailable
from event_collector.kit.fileperms import prepare_sqlite_file
from event_collector.kit.settings import Settings

T = TypeVar("T")

_BACKENDS: dict[str, Backend] = {"sqlite": SQLiteBackend(), "postgresql": PostgresBackend()}


def backend_of(conn: AnyConnection) -> Backend:
    """The backend of the database ``conn`` is connected to."""
    return _BACKENDS[conn.dialect.name]


def create_engine(
    settings: Settings,
    *,
    statement_timeout: float | None = None,
    pool_size: int | None = None,
) -> AsyncEngine:
    """An engine whose waits on the database are bounded by the settings (connect, pool
    checkout) and by ``statement_timeout`` (None: statements run as long as they need), so that
    an unreachable or frozen database costs a request a 503 within seconds rather than a hang."""
    pool_size = pool_size or settings.database_pool_size
    if settings.is_sqlite:
        prepare_sqlite_file(settings.database_url)  # owner-only, with its -wal / -shm
        busy_seconds = statement_timeout if statement_timeout is not None else 30.0
        engine = create_async_engine(
            settings.database_url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=settings.database_pool_timeout,
            connect_args={"timeout": busy_seconds},
        )
        _install_sqlite_listeners(
            engine.sync_engine, settings, busy_timeout_ms=int(busy_seconds * 1000)
        )
        return engine
    connect_args: dict[str, Any] = {"timeout": settings.database_connect_timeout}
    if statement_timeout is not None:
        # The server cancels a slow statement cleanly (the connection stays usable); the
        # client-side bound, a little later, is for a server that does not answer at all.
        connect_args["server_settings"] = {"statement_timeout": str(int(statement_timeout * 1000))}
        connect_args["command_timeout"] = statement_timeout + CLIENT_TIMEOUT_MARGIN_SECONDS
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=settings.database_pool_timeout,
        connect_args=connect_args,
    )
    _check_on_checkout(
        engine.sync_engine, PING_AFTER_IDLE_SECONDS, settings.database_connect_timeout
    )
    return engine


def _fsync(settings: Settings) -> bool:
    return settings.is_sqlite and settings.sqlite_synchronous == "FULL"


BULK_POOL_SIZE = 2
"""Connections for bulk reads (as many again may overflow): job runs, few at a time."""

CLIENT_TIMEOUT_MARGIN_SECONDS = 1.0
"""How long after the server's statement timeout the client gives up on a silent server."""


PING_AFTER_IDLE_SECONDS = 10.0
"""A pooled PostgreSQL connection unused for longer than this is pinged before it is handed out."""


def _check_on_checkout(engine: Engine, ping_after_idle: float, ping_timeout: float) -> None:
    """Hand out live connections without a round trip per checkout.

    SQLAlchemy's ``pool_pre_ping`` costs three round trips with asyncpg (``BEGIN``, ``;``,
    ``ROLLBACK``) on every checkout: with the ingest writer checking out a connection per group
    commit, that was half of a group's round trips. Instead: a connection whose socket the
    driver already saw closed (server restart, ``pg_terminate_backend``, idle timeout) is
    replaced without asking the server, and only a connection that sat idle (when a silently
    dropped one is likely: a NAT or firewall timeout) is pinged. A connection that breaks while
    busy fails its statement as it would after a ping anyway; SQLAlchemy then invalidates it and
    the pool, and the ingest writer retries the group's requests one by one on new connections.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["ec_idle_since"] = time.monotonic()

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        # A statement that timed out on the client side: SQLAlchemy invalidates the connection
        # and first offers the server a polite close, waiting up to two seconds for a frozen
        # server to answer it. Dropping the socket now makes that close return at once.
        if context.connection is None or not is_timeout(context.original_exception):
            return
        with contextlib.suppress(Exception):
            context.connection.connection.driver_connection.terminate()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = dbapi_connection.driver_connection
        if driver.is_closed():
            raise DisconnectionError("the server closed this connection")
        idle_since = record.info.get("ec_idle_since")
        if idle_since is not None and time.monotonic() - idle_since > ping_after_idle:
            try:
                # Bounded like a connect: a server that answers nothing should cost no more.
                await_(driver.execute(";", timeout=ping_timeout))
            except Exception as exc:
                # Dropped at once: SQLAlchemy's invalidation would first wait up to two seconds
                # for a polite close that a server in this state will not answer.
                driver.terminate()
                raise DisconnectionError("the idle connection did not answer a ping") from exc


def _create_inline_sqlite_engine(settings: Settings) -> Engine:
    url = settings.database_url.replace("sqlite+aiosqlite://", "sqlite+pysqlite://", 1)
    engine = create_sync_engine(url, poolclass=NullPool)
    # Short: this connection blocks the event loop while it waits (then falls back).
    _install_sqlite_listeners(engine, settings, busy_timeout_ms=20, always_immediate=True)
    return engine


def _install_sqlite_listeners(
    engine: Engine, settings: Settings, *, busy_timeout_ms: int, always_immediate: bool = False
) -> None:
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = always_immediate or conn.get_execution_options().get("ec_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The engine plus the transaction helpers every request and worker uses."""

    def __init__(
        self,
        engine: AsyncEngine,
        inline_engine: Engine | None = None,
        *,
        fsync_on_commit: bool = False,
        bulk_engine: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        self._fsync_on_commit = fsync_on_commit
        self.backend = _BACKENDS[engine.dialect.name]
        self.is_sqlite = isinstance(self.backend, SQLiteBackend)
        self._sqlite_write_lock = asyncio.Lock()
        self._inline_engine = inline_engine
        self._inline_connection: Connection | None = None
        # PostgreSQL: idle connections of the ingest writer, with when each was last used.
        self._writer_connections: list[tuple[AsyncConnection, float]] = []
        self._bulk_engine = bulk_engine

    @classmethod
    def from_settings(cls, settings: Settings, *, bound_statements: bool = True) -> Database:
        """The service's database: statements bounded by ``EC_DATABASE_STATEMENT_TIMEOUT``, bulk
        reads (:meth:`read` ``bulk=True``) by ``EC_DATABASE_BULK_STATEMENT_TIMEOUT`` on a small
        pool of their own. ``bound_statements=False`` (operator commands: migrations, rebuilds)
        lets every statement run as long as it needs."""
        inline = _create_inline_sqlite_engine(settings) if settings.is_sqlite else None
        if not bound_statements:
            return cls(create_engine(settings), inline, fsync_on_commit=_fsync(settings))
        bulk = None
        if not settings.is_sqlite:  # SQLite's timeout is for the write lock, not statements
            bulk = create_engine(
                settings,
                statement_timeout=settings.database_bulk_statement_timeout,
                pool_size=BULK_POOL_SIZE,
            )
        return cls(
            create_engine(settings, statement_timeout=settings.database_statement_timeout),
            inline,
            fsync_on_commit=_fsync(settings),
            bulk_engine=bulk,
        )

    @asynccontextmanager
    async def write_inline(self) -> AsyncIterator[AnyConnection]:
        """A write transaction for the ingest writer's group commits.

        On SQLite, aiosqlite runs every statement in a thread and resumes the caller through the
        event loop's ready queue; under load each of a transaction's statements waits behind
        all the requests being parsed, and a 2 ms group write takes 15 ms. Here the transaction
        runs synchronously on the loop instead (a SQLite write of a group takes about a
        millisecond). If another process holds the write lock, it falls back to :meth:`write`,
        which waits for it off the loop. On PostgreSQL see :meth:`_write_on_writer_connection`.
        """
        if self._inline_engine is None:
            async with self._write_on_writer_connection() as conn:
                yield conn
            return
        async with _unavailable_as_503():
            async with self._sqlite_write_lock:
                if self._inline_connection is None:
                    self._inline_connection = self._inline_engine.connect()
                sync_conn = self._inline_connection
                try:
                    sync_conn.begin()
                except OperationalError:
                    sync_conn.rollback()
                    locked_by_another_process = True
                else:
                    locked_by_another_process = False
                if not locked_by_another_process:
                    try:
                        yield cast(AsyncConnection, InlineConnection(sync_conn))
                    except BaseException:
                        sync_conn.rollback()
                        raise
                    if self._fsync_on_commit:
                        # sqlite3 releases the GIL while it fsyncs: requests go on meanwhile.
                        await asyncio.to_thread(sync_conn.commit)
                    else:
                        sync_conn.commit()
                    return
            async with self.write() as conn:
                yield conn

    @asynccontextmanager
    async def _write_on_writer_connection(self) -> AsyncIterator[AsyncConnection]:
        """A PostgreSQL transaction on one of the writer's long-lived connections.

        Taking a connection from the pool and giving it back cost each group commit 50 to 120 µs of
        CPU (checkout and check-in events, the connection wrappers), a few µs per event of a
        small group. The writer keeps its connections instead, one per group in flight.
        One the server closed, or idle for longer than ``PING_AFTER_IDLE_SECONDS``, is replaced
        by a new connection before use; one whose transaction failed is never reused (the
        writer's retry then gets a new one).
        """
        conn: AsyncConnection | None = None
        while self._writer_connections:
            candidate, last_used = self._writer_connections.pop()
            driver = candidate.sync_connection.connection.driver_connection  # type: ignore[union-attr]
            if driver is None or driver.is_closed():
                await candidate.invalidate()
            elif time.monotonic() - last_used > PING_AFTER_IDLE_SECONDS:
                await candidate.invalidate()  # a new connection costs less than a doubt
            else:
                conn = candidate
                break
        async with self._unavailable(self.engine) as fault:
            fault.reused = conn is not None
            if conn is None:
                conn = await self.engine.connect()
                fault.reused = _was_used_before(conn)
            try:
                async with _transaction(conn):
                    yield conn
            except BaseException:
                await asyncio.shield(conn.close())
                raise
        self._writer_connections.append((conn, time.monotonic()))

    @asynccontextmanager
    async def read(self, *, bulk: bool = False) -> AsyncIterator[AsyncConnection]:
        """A transaction; ``bulk=True`` for a read that may take long (a notification job's rule
        query over a whole tenant) and must not be cut off by the statement timeout meant for
        requests."""
        engine = self._bulk_engine if bulk and self._bulk_engine is not None else self.engine
        async with self._unavailable(engine) as fault, engine.connect() as conn:
            fault.reused = _was_used_before(conn)
            async with _transaction(conn):
                yield conn

    async def read_again_if_stale(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run a short read; if it met a connection the server had dropped (the pool is then
        started afresh, see :meth:`_unavailable`), run it once more on a new one. For reads on
        every request's path (the token check) that a stale pool must not turn into a 503."""
        try:
            async with self.read() as conn:
                return await work(conn)
        except DatabaseUnavailable as exc:
            if not exc.stale_connection:
                raise
        async with self.read() as conn:
            return await work(conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        if not self.is_sqlite:
            async with self.read() as conn:
                yield conn
            return
        async with (
            _unavailable_as_503(),
            self._sqlite_write_lock,
            self.engine.connect() as conn,
        ):
            conn = await conn.execution_options(ec_write=True)
            async with _transaction(conn):
                yield conn

    @asynccontextmanager
    async def _unavailable(self, engine: AsyncEngine) -> AsyncIterator[_Fault]:
        """:func:`_unavailable_as_503`, and after a stale connection a fresh start: the server
        that dropped one connection (a restart, a failover, ``pg_terminate_backend``) has most
        likely dropped every other one opened before, and a caller's one retry must not meet
        the next of them."""
        try:
            async with _unavailable_as_503() as fault:
                yield fault
        except DatabaseUnavailable as exc:
            if exc.stale_connection:
                await self._forget_connections(engine)
            raise

    async def _forget_connections(self, engine: AsyncEngine) -> None:
        while self._writer_connections:
            await self._writer_connections.pop()[0].invalidate()
        await engine.dispose(close=False)  # connections checked out now go with the old pool

    async def dispose(self) -> None:
        while self._writer_connections:
            await self._writer_connections.pop()[0].close()
        if self._inline_connection is not None:
            self._inline_connection.close()
            self._inline_connection = None
        if self._inline_engine is not None:
            self._inline_engine.dispose()
        if self._bulk_engine is not None:
            await self._bulk_engine.dispose()
        await self.engine.dispose()


class _Fault:
    """Filled in while a transaction runs: whether its connection had served before."""

    reused = False


@asynccontextmanager
async def _unavailable_as_503() -> AsyncIterator[_Fault]:
    """Translate "the database is unreachable or not answering" into DatabaseUnavailable.

    This is the one place a driver's connection errors and timeouts become the 503 every
    endpoint answers with and the signal every worker backs off on (kit/db/faults.py says
    which errors count). A failure on a connection that had served before may be a stale
    one the server dropped: ``stale_connection`` tells a caller that can repeat its unit of
    work that a new connection may well succeed.
    """
    fault = _Fault()
    try:
        yield fault
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        # A timeout is the database not answering, which a second try would only wait for again.
        stale = fault.reused and not is_timeout(exc)
        raise DatabaseUnavailable(stale_connection=stale) from exc


@asynccontextmanager
async def _transaction(conn: AsyncConnection) -> AsyncIterator[None]:
    """Commit when the block ends; roll back if it raised, except on a connection that failed
    (it is discarded instead: a ROLLBACK to a server that does not answer would wait for the
    statement timeout again, and a connection whose statement timed out on the client side is
    still busy cancelling it)."""
    transaction = await conn.begin()
    try:
        yield
    except BaseException as exc:
        if is_unavailable(exc):
            await _discard(conn)
        await transaction.rollback()  # after a discard: no round trip, only the bookkeeping
        raise
    try:
        await transaction.commit()
    except Exception as exc:
        if is_unavailable(exc):
            await _discard(conn)
        raise


async def _discard(conn: AsyncConnection) -> None:
    """Drop a connection without talking to the server (SQLAlchemy's invalidation would first
    try a polite close and wait up to two seconds for a frozen server to answer it)."""
    if conn.invalidated:  # SQLAlchemy saw the disconnect itself and dropped it already
        return
    fairy = conn.sync_connection.connection if conn.sync_connection is not None else None
    terminate = getattr(fairy.driver_connection if fairy is not None else None, "terminate", None)
    if terminate is not None:
        terminate()
    await conn.invalidate()


def _was_used_before(conn: AsyncConnection) -> bool:
    # Set at check-in by _check_on_checkout; SQLAlchemy clears a record's info when it replaces
    # the connection.
    return conn.sync_connection is not None and "ec_idle_since" in conn.sync_connection.info

"""Group commit: items submitted concurrently share one write transaction.

A caller hands an item to :meth:`GroupCommit.submit` and waits on the future it gets back. Up
to ``max_concurrent`` flushes run at a time; everything submitted while they run becomes the
next group, which ``write`` stores in one transaction (so many small writes share a commit and
its per-statement costs) and answers one result per item.

If a group's write fails, its items are written again one by one, so an item that cannot be
stored fails alone and never takes its neighbours down with it. If the database is unavailable
(``DatabaseUnavailable``), the group and everything queued behind it fail at once with it (after
one more try when the failure may have been only a stale connection).

Used by the event writer (``events/writer.py``: ingest requests) and the delivery dispatcher's
outcome recorder (``delivery/dispatcher.py``: attempt outcomes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from event_collector.kit.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Submitted(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        what: str,
        max_concurrent: int = 1,
        linger: float = 0.0,
        max_group_weight: int | None = None,
        weight: Callable[[Item], int] = lambda _item: 1,
        failure: Callable[[Exception], Exception] = lambda exc: exc,
    ) -> None:
        """``write`` stores a group in one transaction and returns one result per item.

        ``what`` names the items in logs. A flush first waits ``linger`` seconds (0: one loop
        turn), so that the requests already parsed and ready to run join the group instead of
        waiting for the next one. A group holds items up to ``max_group_weight`` (at least one
        item). An item that cannot be written fails with ``failure(exc)``."""
        self._write = write
        self._what = what
        self._max_concurrent = max_concurrent
        self._linger = linger
        self._max_group_weight = max_group_weight
        self._weight = weight
        self._failure = failure
        self._pending: list[_Submitted[Item, Result]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """Queue an item; the future completes when its group is committed (or failed)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append(_Submitted(item, future))
        if len(self._flushers) < self._max_concurrent:
            flusher = asyncio.create_task(self._flush_loop())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)  # also if cancelled before running
        return future

    async def drain(self) -> None:
        """Wait until everything submitted so far is written (used at shutdown)."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)

    async def _flush_loop(self) -> None:
        try:
            await self._flush_pending()
        finally:
            # Leave the set in the same step as the last look at _pending: a done-callback
            # would run a loop iteration later, and an item submitted in between would see a
            # flusher that has already stopped and wait for the next submission to start one.
            self._flushers.discard(asyncio.current_task())

    async def _flush_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(self._linger)
            group = self._take_group()
            if not group:
                continue
            try:
                results = await self._write_group([submitted.item for submitted in group])
            except DatabaseUnavailable:
                self._fail_in_outage(group)
                continue
            except Exception as exc:
                if len(group) == 1:
                    logger.exception("writing a %s failed", self._what)
                    _fail(group[0], self._failure(exc))
                    continue
                logger.warning(
                    "a group commit of %d %ss failed; writing them one by one",
                    len(group),
                    self._what,
                )
                for position, submitted in enumerate(group):
                    if not await self._write_alone(submitted):
                        self._fail_in_outage(group[position + 1 :])
                        break
                continue
            for submitted, result in zip(group, results, strict=True):
                _resolve(submitted, result)

    async def _write_group(self, items: Sequence[Item]) -> Sequence[Result]:
        try:
            return await self._write(items)
        except DatabaseUnavailable as exc:
            if not exc.stale_connection:
                raise
            # Perhaps only a connection the server had dropped: once more, on a new one.
            logger.info("retrying a group of %d %ss on a new connection", len(items), self._what)
            return await self._write(items)

    def _fail_in_outage(self, group: list[_Submitted[Item, Result]]) -> None:
        """The database is unavailable: fail the group and everything waiting behind it now,
        rather than let each try again after the timeouts (item by item, that would be minutes)."""
        waiting, self._pending = self._pending, []
        failed = group + waiting
        logger.warning("database unavailable: %d %s(s) not written", len(failed), self._what)
        for submitted in failed:
            _fail(submitted, DatabaseUnavailable())

    async def _write_alone(self, submitted: _Submitted[Item, Result]) -> bool:
        """Write one item; False if the database is unavailable (the item is not failed yet)."""
        try:
            (result,) = await self._write_group([submitted.item])
        except DatabaseUnavailable:
            self._fail_in_outage([submitted])
            return False
        except Exception as exc:
            logger.exception("writing a %s failed", self._what)
            _fail(submitted, self._failure(exc))
        else:
            _resolve(submitted, result)
        return True

    def _take_group(self) -> list[_Submitted[Item, Result]]:
        group: list[_Submitted[Item, Result]]
        if self._max_group_weight is None:
            group, self._pending = self._pending, []
            return group
        group = []
        weight = 0
        while self._pending and (
            not group or weight + self._weight(self._pending[0].item) <= self._max_group_weight
        ):
            submitted = self._pending.pop(0)
            group.append(submitted)
            weight += self._weight(submitted.item)
        return group


def _resolve(submitted: _Submitted[Item, Result], result: Result) -> None:
    if not submitted.future.done():
        submitted.future.set_result(result)


def _fail(submitted: _Submitted[Item, Result], exc: Exception) -> None:
    if not submitted.future.done():
        submitted.future.set_exception(exc)

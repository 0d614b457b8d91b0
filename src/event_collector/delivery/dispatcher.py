"""The dispatcher: claims due deliveries with a lease and sends them, destination by destination.

* **Claiming.** Due ``pending`` rows of active subscriptions are leased (``lease_owner``,
  ``lease_expires_at``) in one write transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
  SQLite write transactions are serialised). A heartbeat renews the leases of rows being sent; a
  crashed worker's rows are claimed again when their lease expires (at-least-once).
* **Isolation.** Claimed rows join their destination's (subscription's) lane: a queue served by
  at most ``delivery_concurrency_per_destination`` sends at once; rows claimed while a lane is
  busy join its queue, so a busy destination's pipeline does not drain between claims. A
  destination whose lane already holds ``4 x concurrency`` queued rows, or whose circuit breaker
  is open, is left out of the next claims, so a slow or dead destination only ever occupies a
  bounded number of its own rows and never the loop.
* **Waking.** An in-process event (set after an ingest commit, when a group finishes), PostgreSQL
  ``LISTEN`` (other processes' ``NOTIFY``), and a timer for the next due retry, lease expiry or
  breaker cool-down. No busy polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from event_collector.delivery import metrics, repository, service
from event_collector.delivery.messages import OutgoingMessage, render
from event_collector.delivery.repository import AttemptRecord, ClaimedDelivery, DestinationKey
from event_collector.delivery.senders import (
    AWS_BATCH_ENTRIES,
    Destination,
    Senders,
    SendResult,
    chunk_for_aws,
)
from event_collector.kit.crypto import SecretBox, SecretDecryptionError
from event_collector.kit.db import Database, utcnow
from event_collector.kit.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open_until: float = 0.0

    def is_open(self, now: float) -> bool:
        return now < self.open_until


@dataclass(slots=True)
class _Lane:
    """One destination's queue of claimed deliveries (with the destination opened for them,
    or the failure to open it)."""

    key: DestinationKey
    destination_type: str
    queue: deque[tuple[ClaimedDelivery, Destination | SendResult, OutgoingMessage]] = field(
        default_factory=deque
    )
    more: asyncio.Event = field(default_factory=asyncio.Event)
    recording: set[asyncio.Future[None]] = field(default_factory=set)
    low_signalled: bool = False
    closed: bool = False


_STATE_OF_OUTCOME = {"success": "delivered", "retry": "retry", "failed": "dead_letter"}


@functools.cache
def _outcome_metrics(destination_type: str, outcome: str) -> tuple[Any, Any]:
    """The metric children of one (type, outcome): ``labels()`` costs more than ``inc()``."""
    return (
        metrics.deliveries.labels(destination_type, _STATE_OF_OUTCOME[outcome]),
        metrics.attempt_latency.labels(destination_type, outcome),
    )


@dataclass(slots=True)
class _Outcome:
    key: DestinationKey
    destination_type: str
    records: list[AttemptRecord]


@dataclass(slots=True)
class _Pending:
    outcome: _Outcome
    future: asyncio.Future[None] = field(repr=False)


class _Recorder:
    """Group commit for attempt outcomes: everything finished while one transaction runs (or
    within ``linger`` seconds) is written by the next one, so many small sends share a commit
    and its per-statement costs."""

    def __init__(
        self,
        db: Database,
        apply: Callable[[Any, list[_Outcome]], Awaitable[None]],
        linger: float = 0.02,
    ) -> None:
        self._db = db
        self._apply = apply
        self._linger = linger
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, outcome: _Outcome) -> asyncio.Future[None]:
        """Queue an outcome; the future completes when it is committed (or failed to be)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(outcome, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_loop())
        return future

    async def _flush_loop(self) -> None:
        while self._pending:
            # On SQLite a group is written without suspending (kit/db.py write_inline), so
            # without this pause each group would hold only what finished in one loop turn.
            await asyncio.sleep(self._linger)
            group, self._pending = self._pending, []
            try:
                await self._write(group)
            except Exception:
                if len(group) == 1:
                    logger.exception("recording a delivery outcome failed")
                    continue
                # One bad outcome must not take its neighbours down: retry one by one.
                for item in group:
                    try:
                        await self._write([item])
                    except Exception:
                        logger.exception("recording a delivery outcome failed")

    async def _write(self, group: list[_Pending]) -> None:
        try:
            # On SQLite the group is written synchronously on the loop (kit/db.py write_inline):
            # through aiosqlite each statement would wait behind every ready send.
            async with self._db.write_inline() as conn:
                await self._apply(conn, [item.outcome for item in group])
        except Exception as exc:
            if len(group) == 1 and not group[0].future.done():
                group[0].future.set_exception(exc)
            raise
        for item in group:
            if not item.future.done():
                item.future.set_result(None)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        secrets: SecretBox,
        *,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.secrets = secrets
        self.owner = owner or f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.senders = Senders(settings)
        self._wake = asyncio.Event()
        self._stopping = False
        self._groups: set[asyncio.Task[None]] = set()  # lanes, including ones still recording
        self._lanes: dict[DestinationKey, _Lane] = {}
        self._in_flight: set[str] = set()
        self._breakers: dict[DestinationKey, _Breaker] = {}
        self._recorder = _Recorder(db, self._apply_outcomes)
        self._tasks: list[asyncio.Task[None]] = []
        self.notifications = 0  # NOTIFYs received (observability, tests)

    # Wiring -----------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._loop(), name="dispatcher"),
            asyncio.create_task(self._heartbeat(), name="dispatcher-heartbeat"),
            asyncio.create_task(self._metrics_loop(), name="dispatcher-metrics"),
        ]
        if not self.db.is_sqlite:
            self._tasks.append(asyncio.create_task(self._listen(), name="dispatcher-listen"))
        logger.info("delivery dispatcher %s started", self.owner)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming, let sends in flight finish for ``grace`` seconds, then give the rest
        of the leases back so another worker can take them at once."""
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        leased = sorted(self._in_flight)
        groups = list(self._groups)
        if groups:
            _, still_running = await asyncio.wait(groups, timeout=grace)
            for task in still_running:
                task.cancel()
            await asyncio.gather(*still_running, return_exceptions=True)
        if leased:
            # Rows already recorded have no lease any more; the rest go back to the queue.
            with contextlib.suppress(Exception):
                async with self.db.write() as conn:
                    await repository.release(conn, self.owner, leased)
            self._in_flight.clear()
        await self.senders.close()
        logger.info("delivery dispatcher %s stopped", self.owner)

    async def run_forever(self) -> None:
        """For the `worker` command: run until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # The loop ---------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            claimed_full = False
            try:
                capacity = self.settings.delivery_max_in_flight - len(self._in_flight)
                if capacity <= 0:
                    # Full: a finishing group wakes us.
                    await self._sleep(self.settings.delivery_idle_poll_seconds)
                    continue
                limit = min(self.settings.delivery_batch_size, capacity)
                claimed = await self._claim(limit)
                if claimed:
                    self._dispatch(claimed)
                claimed_full = len(claimed) >= limit
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("claiming deliveries failed; retrying shortly")
                await self._sleep(1.0)
                continue
            if claimed_full:
                await asyncio.sleep(0)
                continue
            await self._sleep(await self._idle_timeout())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0.0))

    def _excluded(self) -> set[DestinationKey]:
        now = time.monotonic()
        backlog = self._lane_backlog()
        excluded = {key for key, lane in self._lanes.items() if len(lane.queue) >= backlog}
        excluded.update(key for key, b in self._breakers.items() if b.is_open(now))
        return excluded

    async def _claim(self, limit: int) -> list[ClaimedDelivery]:
        now = utcnow()
        lease_until = now + timedelta(seconds=self.settings.delivery_lease_seconds)
        async with self.db.write_inline() as conn:
            return await repository.claim(
                conn,
                owner=self.owner,
                now=now,
                lease_until=lease_until,
                limit=limit,
                excluded=self._excluded(),
            )

    async def _idle_timeout(self) -> float:
        timeout = self.settings.delivery_idle_poll_seconds
        now_mono = time.monotonic()
        for breaker in self._breakers.values():
            if breaker.is_open(now_mono):
                timeout = min(timeout, breaker.open_until - now_mono)
        try:
            now = utcnow()
            async with self.db.read() as conn:
                due = await repository.next_due_at(conn, now, self._excluded())
        except Exception:
            logger.exception("reading the next due delivery failed")
            return 1.0
        if due is not None:
            timeout = min(timeout, (due - now).total_seconds() + 0.005)
        return max(timeout, 0.0)

    def _dispatch(self, claimed: Sequence[ClaimedDelivery]) -> None:
        groups: dict[DestinationKey, list[ClaimedDelivery]] = {}
        rendered: dict[tuple[str, str], tuple[str, dict[str, str], str]] = {}
        for delivery in claimed:
            groups.setdefault(delivery.key, []).append(delivery)
            self._in_flight.add(delivery.id)
        metrics.in_flight.set(len(self._in_flight))
        for key, deliveries in groups.items():
            # The destination (and its secret) is opened once per subscription per claim.
            first = deliveries[0]
            try:
                destination: Destination | SendResult = service.destination_of(
                    self.secrets,
                    first.tenant,
                    first.subscription_id,
                    first.destination_type,
                    first.destination,
                    first.secret_sealed,
                )
            except SecretDecryptionError as exc:
                destination = SendResult(
                    False, error=f"the destination secret cannot be opened: {exc}", permanent=True
                )
            lane = self._lanes.get(key)
            if lane is None or lane.closed:
                lane = self._lanes[key] = _Lane(key, first.destination_type)
                task = asyncio.create_task(self._run_lane(lane))
                self._groups.add(task)
                task.add_done_callback(self._groups.discard)
            lane.queue.extend(
                (delivery, destination, render(delivery.id, delivery.event, rendered))
                for delivery in deliveries
            )
            lane.low_signalled = False
            lane.more.set()

    # One destination --------------------------------------------------------------------------

    def _lane_backlog(self) -> int:
        """Deliveries queued for one destination before it is left out of claims."""
        return 4 * self.settings.delivery_concurrency_per_destination

    async def _run_lane(self, lane: _Lane) -> None:
        """Send a destination's queued deliveries with at most
        ``delivery_concurrency_per_destination`` in flight; deliveries claimed meanwhile join
        the queue, so a busy destination's pipeline never drains between claims."""
        workers: set[asyncio.Task[None]] = set()
        limit = self.settings.delivery_concurrency_per_destination
        try:
            while lane.queue or workers:
                lane.more.clear()
                target = min(limit, len(workers) + len(lane.queue))
                while len(workers) < target:
                    workers.add(asyncio.create_task(self._lane_worker(lane)))
                more = asyncio.create_task(lane.more.wait())
                try:
                    done, _ = await asyncio.wait(
                        [*workers, more], return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    more.cancel()
                for worker in done & workers:
                    workers.discard(worker)
                    if not worker.cancelled() and worker.exception() is not None:
                        logger.error(
                            "delivering to a %s destination failed",
                            lane.destination_type,
                            exc_info=worker.exception(),
                        )
            # Closed without an await since the queue was seen empty: what is claimed from now
            # on goes to a new lane.
            lane.closed = True
            if self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]
            if lane.recording:
                await asyncio.gather(*lane.recording, return_exceptions=True)
        except asyncio.CancelledError:
            for worker in workers:
                worker.cancel()
            raise
        finally:
            lane.closed = True
            if self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]
            for delivery, _, _ in lane.queue:
                self._in_flight.discard(delivery.id)
            lane.queue.clear()
            metrics.in_flight.set(len(self._in_flight))
            self._wake.set()

    async def _lane_worker(self, lane: _Lane) -> None:
        breaker = self._breakers.setdefault(lane.key, _Breaker())
        low_water = self._lane_backlog() // 2
        batches = lane.destination_type in ("SQS", "SNS")
        while lane.queue:
            delivery, destination, message = lane.queue.popleft()
            items = [(delivery, destination, message)]
            while (
                batches
                and lane.queue
                and len(items) < AWS_BATCH_ENTRIES
                and lane.queue[0][1] is destination
            ):
                items.append(lane.queue.popleft())
            if not lane.low_signalled and len(lane.queue) <= low_water:
                lane.low_signalled = True
                self._wake.set()  # room for this destination in the next claim
            if isinstance(destination, SendResult):
                self._finish_later(lane, [d for d, _, _ in items], [destination] * len(items))
                continue
            if batches:
                by_id = {d.id: d for d, _, _ in items}
                chunks = [
                    ([by_id[m.delivery_id] for m in chunk], chunk)
                    for chunk in chunk_for_aws([m for _, _, m in items])
                ]
            else:  # a webhook: one delivery per request
                chunks = [([delivery], [message])]
            for chunk_deliveries, chunk in chunks:
                if breaker.is_open(time.monotonic()) or self._stopping:
                    self._finish_later(lane, chunk_deliveries, None)
                    continue
                results = await self.senders.send(destination, chunk)
                self._update_breaker(breaker, results)
                # Recording happens outside the concurrency slot: the next send need not wait
                # for this one's commit (outcomes are group-committed anyway).
                self._finish_later(lane, chunk_deliveries, results)

    def _finish_later(
        self,
        lane: _Lane,
        deliveries: list[ClaimedDelivery],
        results: Sequence[SendResult] | None,
    ) -> None:
        """Record the results (or, with None, give the leases back) without holding the lane:
        outcomes go to the recorder's next group commit; the lane ends after they are written."""
        if results is None:
            future: asyncio.Future[None] = asyncio.ensure_future(
                self._release(deliveries, lane.destination_type)
            )
        else:
            future = self._recorder.submit(self._outcome(lane, deliveries, results))

        def recorded(done: asyncio.Future[None]) -> None:
            lane.recording.discard(done)
            for delivery in deliveries:
                self._in_flight.discard(delivery.id)
            metrics.in_flight.set(len(self._in_flight))
            if not done.cancelled() and done.exception() is not None:
                logger.error(
                    "recording a %s delivery failed",
                    lane.destination_type,
                    exc_info=done.exception(),
                )

        lane.recording.add(future)
        future.add_done_callback(recorded)

    def _update_breaker(self, breaker: _Breaker, results: Sequence[SendResult]) -> None:
        if any(r.ok for r in results):
            if breaker.failures or breaker.open_until:
                breaker.failures = 0
                breaker.open_until = 0.0
                self._count_open_breakers()
            return
        breaker.failures += 1
        if breaker.failures >= self.settings.delivery_breaker_failures:
            breaker.open_until = time.monotonic() + self.settings.delivery_breaker_cooldown_seconds
            self._count_open_breakers()

    def _count_open_breakers(self) -> None:
        """On a breaker's change and with the other metrics: not per send (it visits every
        destination this process has sent to)."""
        now = time.monotonic()
        metrics.breakers_open.set(sum(1 for b in self._breakers.values() if b.is_open(now)))

    async def _release(self, deliveries: Sequence[ClaimedDelivery], destination_type: str) -> None:
        async with self.db.write() as conn:
            await repository.release(conn, self.owner, [d.id for d in deliveries])
        metrics.deliveries.labels(destination_type, "released").inc(len(deliveries))

    def _outcome(
        self, lane: _Lane, deliveries: Sequence[ClaimedDelivery], results: Sequence[SendResult]
    ) -> _Outcome:
        now = utcnow()
        records = [
            service.attempt_record(self.settings, delivery, result, now)
            for delivery, result in zip(deliveries, results, strict=True)
        ]
        for record, result in zip(records, results, strict=True):
            counter, latency = _outcome_metrics(lane.destination_type, record.outcome)
            counter.inc()
            latency.observe(result.latency_ms / 1000)
        return _Outcome(lane.key, lane.destination_type, records)

    async def _apply_outcomes(self, conn: Any, outcomes: list[_Outcome]) -> None:
        """Record a group of outcomes in one transaction: attempts, delivery states, and each
        destination's health (a success ends its failing period; failures start or continue it,
        and past ``delivery_deactivate_after`` deactivate the subscription)."""
        records = sorted((r for o in outcomes for r in o.records), key=lambda r: r.delivery_id)
        await repository.record_attempts(conn, records)
        healthy: set[DestinationKey] = set()
        failing: dict[DestinationKey, AttemptRecord] = {}
        for outcome in outcomes:
            if any(r.outcome == "success" for r in outcome.records):
                healthy.add(outcome.key)
            else:
                failing[outcome.key] = outcome.records[-1]
        await repository.mark_subscriptions_healthy(conn, sorted(healthy))
        for key, last in sorted(failing.items()):
            if key in healthy:
                continue
            now = last.attempted_at
            failing_since = await repository.mark_subscription_failing(conn, key, now)
            period = self.settings.delivery_deactivate_after
            if failing_since is None or now - failing_since < period:
                continue
            reason = service.deactivation_reason(failing_since, period, last.error)
            if await repository.deactivate_subscription(conn, key, now, reason):
                metrics.subscriptions_deactivated.inc()
                logger.warning(
                    "subscription deactivated after failing continuously",
                    extra={"tenant": key[0], "subscription_id": key[1]},
                )

    # Background -------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = max(self.settings.delivery_lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            if not self._in_flight:
                continue
            try:
                lease_until = utcnow() + timedelta(seconds=self.settings.delivery_lease_seconds)
                async with self.db.write() as conn:
                    await repository.renew_leases(
                        conn, self.owner, sorted(self._in_flight), lease_until
                    )
            except Exception:
                logger.exception("renewing delivery leases failed")

    async def refresh_metrics(self) -> None:
        now = utcnow()
        async with self.db.read() as conn:
            depth, oldest = await repository.queue_stats(conn, now)
        metrics.queue_depth.set(depth)
        metrics.oldest_due_age.set((now - oldest).total_seconds() if oldest else 0.0)
        self._count_open_breakers()

    async def _metrics_loop(self) -> None:
        while True:
            try:
                await self.refresh_metrics()
            except Exception:
                logger.warning("refreshing delivery metrics failed", exc_info=True)
            await asyncio.sleep(15)

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection; reconnect when it drops."""
        url = self.db.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stopping:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _conn, event=closed: event.set())
                await conn.add_listener(service.NOTIFY_CHANNEL, self._on_notify)
                self._wake.set()  # catch up on anything announced while we were away
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("LISTEN connection failed (%s); retrying", type(exc).__name__)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(2)

    def _on_notify(self, *_args: Any) -> None:
        self.notifications += 1
        self._wake.set()

    def __repr__(self) -> str:  # pragma: no cover
        return f"<Dispatcher {self.owner}>"

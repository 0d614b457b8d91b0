"""The dispatcher: claims due deliveries with a lease and sends them, destination by destination.

* **Claiming.** Due ``pending`` rows of active subscriptions are leased (``lease_owner``,
  ``lease_expires_at``) in one write transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
  SQLite write transactions are serialised). A lease keeper (``kit/leases.py``) renews the
  leases of rows being sent; a crashed worker's rows are claimed again when their lease expires
  (at-least-once).
* **Isolation.** Claimed rows join their destination's lane (``lanes.py``): a queue served by at
  most ``delivery_concurrency_per_destination`` sends at once. A destination whose lane is full,
  or whose circuit breaker (``breaker.py``) is open, is left out of the next claims, so a slow
  or dead destination only ever occupies a bounded number of its own rows and never the loop.
* **Recording.** Outcomes are group-committed (``kit/group_commit.py``); what they do to the
  delivery and its subscription (retries, dead letters, auto-deactivation) is the service's.
* **Waking.** ``kit/waker.py``: after an ingest commit or a finished group (in process),
  PostgreSQL ``LISTEN`` (other processes' ``NOTIFY``), and a timer for the next due retry, lease
  expiry or breaker cool-down. No busy polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from event_collector.delivery import metrics, repository, service
from event_collector.delivery.breaker import Breakers
from event_collector.delivery.lanes import Lane, Lanes, Queued
from event_collector.delivery.repository import DestinationKey
from event_collector.delivery.senders import (
    AWS_BATCH_ENTRIES,
    Destination,
    Senders,
    SendResult,
    chunk_for_aws,
)
from event_collector.delivery.service import ClaimedDelivery, Outcome
from event_collector.kit.backoff import OutageBackoff
from event_collector.kit.crypto import SecretBox, SecretDecryptionError
from event_collector.kit.db import Database, utcnow
from event_collector.kit.errors import DatabaseUnavailable
from event_collector.kit.group_commit import GroupCommit
from event_collector.kit.leases import LeaseKeeper, new_owner
from event_collector.kit.settings import Settings
from event_collector.kit.waker import Waker

logger = logging.getLogger(__name__)

_STATE_OF_OUTCOME = {"success": "delivered", "retry": "retry", "failed": "dead_letter"}


@functools.cache
def _outcome_metrics(destination_type: str, outcome: str) -> tuple[Any, Any]:
    """The metric children of one (type, outcome): ``labels()`` costs more than ``inc()``."""
    return (
        metrics.deliveries.labels(destination_type, _STATE_OF_OUTCOME[outcome]),
        metrics.attempt_latency.labels(destination_type, outcome),
    )


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
        self.owner = owner or new_owner()
        self.senders = Senders(settings)
        self.waker = Waker(db, service.NOTIFY_CHANNEL)
        self._stopping = False
        self._lanes = Lanes(
            settings.delivery_concurrency_per_destination,
            serve=self._serve,
            on_dropped=self._forget,
            on_room=self.waker.wake,
        )
        self._breakers = Breakers(
            settings.delivery_breaker_failures, settings.delivery_breaker_cooldown_seconds
        )
        # The ids of the rows this dispatcher holds (claimed, not yet recorded or released).
        self._leases = LeaseKeeper(
            db,
            repository.LEASES,
            owner=self.owner,
            lease_seconds=settings.delivery_lease_seconds,
            still=repository.STILL_PENDING,
        )
        # On SQLite an outcome group is written without suspending (Database.write_inline), so
        # without a pause each group would hold only what finished in one loop turn.
        self._recorder: GroupCommit[Outcome, None] = GroupCommit(
            self._record, what="delivery outcome", linger=0.02
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._outage = OutageBackoff("delivery", logger)

    @property
    def notifications(self) -> int:
        """NOTIFYs received (observability, tests)."""
        return self.waker.notifications

    @property
    def _in_flight(self) -> set[str]:
        return self._leases.held

    # Wiring -----------------------------------------------------------------------------------

    def open_circuits(self) -> set[DestinationKey]:
        """(tenant, subscription id) of the destinations whose breaker is open in this process."""
        return self._breakers.open_keys()

    def wake(self) -> None:
        self.waker.wake()

    async def start(self) -> None:
        self._stopping = False
        await self.waker.start()
        await self._leases.start()
        self._tasks = [
            asyncio.create_task(self._loop(), name="dispatcher"),
            asyncio.create_task(self._metrics_loop(), name="dispatcher-metrics"),
        ]
        logger.info("delivery dispatcher %s started", self.owner)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming, let sends in flight finish for ``grace`` seconds, then give the rest
        of the leases back so another worker can take them at once."""
        self._stopping = True
        self.waker.wake()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._leases.stop()
        await self.waker.stop()
        leased = sorted(self._in_flight)
        groups = list(self._lanes.tasks)
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

    # The loop ---------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            claimed_full = False
            try:
                capacity = self.settings.delivery_max_in_flight - len(self._in_flight)
                if capacity <= 0:
                    # Full: a finishing group wakes us.
                    await self.waker.wait(self.settings.delivery_idle_poll_seconds)
                    continue
                limit = min(self.settings.delivery_batch_size, capacity)
                claimed = await self._claim(limit)
                if claimed:
                    self._dispatch(claimed)
                claimed_full = len(claimed) >= limit
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                await self.waker.wait(self._outage.failed())
                continue
            except Exception:
                logger.exception("claiming deliveries failed; retrying shortly")
                await self.waker.wait(1.0)
                continue
            self._outage.succeeded()
            if claimed_full:
                await asyncio.sleep(0)
                continue
            await self.waker.wait(await self._idle_timeout())

    def _excluded(self) -> set[DestinationKey]:
        return self._lanes.full_keys() | self._breakers.open_keys()

    async def _claim(self, limit: int) -> list[ClaimedDelivery]:
        now = utcnow()
        lease_until = now + timedelta(seconds=self.settings.delivery_lease_seconds)
        async with self.db.write_inline() as conn:
            return await service.claim(
                conn,
                owner=self.owner,
                now=now,
                lease_until=lease_until,
                limit=limit,
                excluded=self._excluded(),
            )

    async def _idle_timeout(self) -> float:
        timeout = self._breakers.seconds_to_next_close(self.settings.delivery_idle_poll_seconds)
        try:
            now = utcnow()
            async with self.db.read() as conn:
                due = await repository.next_due_at(conn, now, self._excluded())
        except DatabaseUnavailable:
            return self._outage.failed()
        except Exception:
            logger.exception("reading the next due delivery failed")
            return 1.0
        if due is not None:
            timeout = min(timeout, (due - now).total_seconds() + 0.005)
        return max(timeout, 0.0)

    def _dispatch(self, claimed: Sequence[ClaimedDelivery]) -> None:
        groups: dict[DestinationKey, list[ClaimedDelivery]] = {}
        for delivery in claimed:
            groups.setdefault(delivery.key, []).append(delivery)
        self._leases.hold(delivery.id for delivery in claimed)
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
                    first.headers_sealed,
                )
            except SecretDecryptionError as exc:
                destination = SendResult(
                    False, error=f"the destination secret cannot be opened: {exc}", permanent=True
                )
            self._lanes.add(
                key, first.destination_type, ((delivery, destination) for delivery in deliveries)
            )

    # One destination's worker -----------------------------------------------------------------

    async def _serve(self, lane: Lane) -> None:
        """Send the lane's queued deliveries (AWS destinations in batches of up to 10)."""
        breaker = self._breakers.of(lane.key)
        batches = lane.destination_type in ("SQS", "SNS")
        while lane.queue:
            items: list[Queued] = [self._lanes.take_from(lane)]
            destination = items[0][1]
            while (
                batches
                and lane.queue
                and len(items) < AWS_BATCH_ENTRIES
                and lane.queue[0][1] is destination
            ):
                items.append(self._lanes.take_from(lane))
            deliveries = [delivery for delivery, _ in items]
            if isinstance(destination, SendResult):
                self._finish_later(lane, deliveries, [destination] * len(items))
                continue
            if batches:
                by_id = {delivery.id: delivery for delivery in deliveries}
                chunks = [
                    [by_id[message.delivery_id] for message in chunk]
                    for chunk in chunk_for_aws([delivery.message for delivery in deliveries])
                ]
            else:  # a webhook: one delivery per request
                chunks = [deliveries]
            for chunk in chunks:
                if breaker.is_open(time.monotonic()) or self._stopping:
                    self._finish_later(lane, chunk, None)
                    continue
                results = await self.senders.send(destination, [d.message for d in chunk])
                self._breakers.record(breaker, results)
                # Recording happens outside the concurrency slot: the next send need not wait
                # for this one's commit (outcomes are group-committed anyway).
                self._finish_later(lane, chunk, results)

    def _finish_later(
        self,
        lane: Lane,
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
            self._forget(deliveries)
            if not done.cancelled() and done.exception() is not None:
                logger.error(
                    "recording a %s delivery failed",
                    lane.destination_type,
                    exc_info=done.exception(),
                )

        lane.recording.add(future)
        future.add_done_callback(recorded)

    def _forget(self, deliveries: list[ClaimedDelivery]) -> None:
        """These rows are recorded or given back: no lease to renew, room for more."""
        self._leases.drop(delivery.id for delivery in deliveries)
        metrics.in_flight.set(len(self._in_flight))

    async def _release(self, deliveries: Sequence[ClaimedDelivery], destination_type: str) -> None:
        async with self.db.write() as conn:
            await repository.release(conn, self.owner, [d.id for d in deliveries])
        metrics.deliveries.labels(destination_type, "released").inc(len(deliveries))

    def _outcome(
        self, lane: Lane, deliveries: Sequence[ClaimedDelivery], results: Sequence[SendResult]
    ) -> Outcome:
        now = utcnow()
        records = [
            service.attempt_record(self.settings, delivery, result, now)
            for delivery, result in zip(deliveries, results, strict=True)
        ]
        for record, result in zip(records, results, strict=True):
            counter, latency = _outcome_metrics(lane.destination_type, record.outcome)
            counter.inc()
            latency.observe(result.latency_ms / 1000)
        return Outcome(lane.key, records)

    async def _record(self, outcomes: Sequence[Outcome]) -> list[None]:
        # On SQLite the group is written synchronously on the loop (Database.write_inline):
        # through aiosqlite each statement would wait behind every ready send.
        async with self.db.write_inline() as conn:
            await service.record_outcomes(conn, self.settings, outcomes)
        return [None] * len(outcomes)

    # Background -------------------------------------------------------------------------------

    async def refresh_metrics(self) -> None:
        now = utcnow()
        async with self.db.read() as conn:
            depth, oldest = await repository.queue_stats(conn, now)
        metrics.queue_depth.set(depth)
        metrics.oldest_due_age.set((now - oldest).total_seconds() if oldest else 0.0)
        self._breakers.count_open()

    async def _metrics_loop(self) -> None:
        while True:
            try:
                await self.refresh_metrics()
            except Exception:
                logger.warning("refreshing delivery metrics failed", exc_info=True)
            await asyncio.sleep(15)

    def __repr__(self) -> str:  # pragma: no cover
        return f"<Dispatcher {self.owner}>"

"""Lanes: one queue per destination (subscription) of claimed deliveries, served by at most
``concurrency`` workers at once.

Rows claimed while a lane is busy join its queue, so a busy destination's pipeline does not
drain between claims. A lane holding :attr:`Lanes.backlog` queued rows is left out of the next
claims (:meth:`Lanes.full_keys`), so a slow destination only ever occupies a bounded number of
its own rows; when its queue falls to half of that, the lane asks for more (``on_room``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from event_collector.delivery.repository import DestinationKey
from event_collector.delivery.senders import Destination, SendResult
from event_collector.delivery.service import ClaimedDelivery

logger = logging.getLogger(__name__)

Queued = tuple[ClaimedDelivery, Destination | SendResult]
"""A claimed delivery with its destination opened (or why it cannot be)."""


@dataclass(slots=True)
class Lane:
    key: DestinationKey
    destination_type: str
    queue: deque[Queued] = field(default_factory=deque)
    more: asyncio.Event = field(default_factory=asyncio.Event)
    # Outcomes of this lane still being written: the lane ends after them.
    recording: set[asyncio.Future[None]] = field(default_factory=set)
    low_signalled: bool = False
    closed: bool = False


class Lanes:
    def __init__(
        self,
        concurrency: int,
        serve: Callable[[Lane], Coroutine[Any, Any, None]],
        on_dropped: Callable[[list[ClaimedDelivery]], None],
        on_room: Callable[[], None],
    ) -> None:
        """``serve(lane)`` is one worker: it takes deliveries off the lane's queue and sends
        them. ``on_dropped`` gets the deliveries a lane ended without serving (cancelled);
        ``on_room`` is called when a lane can take more, and when a lane ends."""
        self.concurrency = concurrency
        self._serve = serve
        self._on_dropped = on_dropped
        self._on_room = on_room
        self._lanes: dict[DestinationKey, Lane] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # lanes, including ones still recording

    @property
    def backlog(self) -> int:
        """Deliveries queued for one destination before it is left out of claims."""
        return 4 * self.concurrency

    def full_keys(self) -> set[DestinationKey]:
        backlog = self.backlog
        return {key for key, lane in self._lanes.items() if len(lane.queue) >= backlog}

    def take_from(self, lane: Lane) -> Queued:
        """The next queued delivery of ``lane`` (the queue must not be empty)."""
        item = lane.queue.popleft()
        if not lane.low_signalled and len(lane.queue) <= self.backlog // 2:
            lane.low_signalled = True
            self._on_room()  # room for this destination in the next claim
        return item

    def add(self, key: DestinationKey, destination_type: str, items: Iterable[Queued]) -> None:
        lane = self._lanes.get(key)
        if lane is None or lane.closed:
            lane = self._lanes[key] = Lane(key, destination_type)
            task = asyncio.create_task(self._run(lane))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        lane.queue.extend(items)
        lane.low_signalled = False
        lane.more.set()

    async def _run(self, lane: Lane) -> None:
        """Serve the lane with at most ``concurrency`` workers until its queue is empty and
        its outcomes are written."""
        workers: set[asyncio.Task[None]] = set()
        try:
            while lane.queue or workers:
                lane.more.clear()
                target = min(self.concurrency, len(workers) + len(lane.queue))
                while len(workers) < target:
                    workers.add(asyncio.create_task(self._serve(lane)))
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
            self._close(lane)
            if lane.recording:
                await asyncio.gather(*lane.recording, return_exceptions=True)
        except asyncio.CancelledError:
            for worker in workers:
                worker.cancel()
            raise
        finally:
            self._close(lane)
            if lane.queue:
                self._on_dropped([delivery for delivery, _ in lane.queue])
                lane.queue.clear()
            self._on_room()

    def _close(self, lane: Lane) -> None:
        lane.closed = True
        if self._lanes.get(lane.key) is lane:
            del self._lanes[lane.key]

"""Circuit breakers, one per destination: after ``failures`` sends in a row fail, the destination
is left alone for ``cooldown`` seconds (its deliveries wait in the queue, untouched)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from event_collector.delivery import metrics
from event_collector.delivery.repository import DestinationKey
from event_collector.delivery.senders import SendResult


@dataclass(slots=True)
class Breaker:
    failures: int = 0
    open_until: float = 0.0

    def is_open(self, now: float) -> bool:
        return now < self.open_until


class Breakers:
    def __init__(self, failures: int, cooldown: float) -> None:
        self._failures = failures
        self._cooldown = cooldown
        self._by_key: dict[DestinationKey, Breaker] = {}

    def of(self, key: DestinationKey) -> Breaker:
        return self._by_key.setdefault(key, Breaker())

    def record(self, breaker: Breaker, results: Sequence[SendResult]) -> None:
        """One send's results: any success closes the breaker, a failure counts towards
        opening it."""
        if any(r.ok for r in results):
            if breaker.failures or breaker.open_until:
                breaker.failures = 0
                breaker.open_until = 0.0
                self.count_open()
            return
        breaker.failures += 1
        if breaker.failures >= self._failures:
            breaker.open_until = time.monotonic() + self._cooldown
            self.count_open()

    def open_keys(self) -> set[DestinationKey]:
        now = time.monotonic()
        return {key for key, breaker in self._by_key.items() if breaker.is_open(now)}

    def seconds_to_next_close(self, at_most: float) -> float:
        """Until the first open breaker closes (at most ``at_most``)."""
        now = time.monotonic()
        timeout = at_most
        for breaker in self._by_key.values():
            if breaker.is_open(now):
                timeout = min(timeout, breaker.open_until - now)
        return timeout

    def count_open(self) -> None:
        """On a breaker's change and with the other metrics: not per send (it visits every
        destination this process has sent to)."""
        now = time.monotonic()
        metrics.breakers_open.set(sum(1 for b in self._by_key.values() if b.is_open(now)))

"""How a background worker waits while the database is unavailable.

The delivery dispatcher and the job scheduler poll the database; during an outage each attempt
costs the connect timeout and a log line. They wait longer after each failed attempt (doubling
up to a cap) and log the start and the end of the outage once each. They also wait on their
:class:`kit.waker.Waker`, which the LISTEN connection wakes when it reconnects, so on
PostgreSQL work resumes as soon as the database is back rather than when the wait ends.
"""

from __future__ import annotations

import logging


class OutageBackoff:
    def __init__(
        self, what: str, logger: logging.Logger, *, first: float = 0.5, cap: float = 15.0
    ) -> None:
        self._what = what
        self._logger = logger
        self._first = first
        self._cap = cap
        self._next = first
        self.failures = 0

    def failed(self) -> float:
        """The database was unavailable: how long to wait before the next attempt."""
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        self.failures += 1
        if self.failures == 1:
            self._logger.warning("database unavailable: %s paused, retrying", self._what)
        return delay

    def succeeded(self) -> None:
        if self.failures:
            self._logger.warning(
                "database available again: %s resumed after %d failed attempt(s)",
                self._what,
                self.failures,
            )
        self.failures = 0
        self._next = self._first

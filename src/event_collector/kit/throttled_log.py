"""A log line that cannot flood the log: one a second at most, counting what it did not print.

For events that come in bursts when something outside is wrong (an attack on the server, a
database outage answered 503 per request): the first is logged at once, the rest of the second
is counted into the next line. Per process, shared by every task (asyncio: no lock needed).
"""

from __future__ import annotations

import logging
import time
from typing import Any


class ThrottledLog:
    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        level: int = logging.WARNING,
        interval: float = 1.0,
    ) -> None:
        self.logger = logger
        self.message = message
        self.level = level
        self.interval = interval
        self.last = -interval
        self.unlogged = 0

    def record(self, *args: Any) -> None:
        """Log ``message % args`` unless a line went out less than ``interval`` ago; the line
        says how many were not logged since the previous one."""
        now = time.monotonic()
        if now - self.last < self.interval:
            self.unlogged += 1
            return
        self.logger.log(
            self.level,
            self.message + " (%d more not logged since the last line)",
            *args,
            self.unlogged,
        )
        self.last = now
        self.unlogged = 0

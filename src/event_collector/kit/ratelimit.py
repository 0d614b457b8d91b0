"""Per-tenant request rate limits: one token bucket per tenant, in process.

A tenant may send ``burst`` requests at once and ``rate`` per second on average; above that it
gets 429 with ``Retry-After`` (whole seconds until the next request would be admitted). The
buckets live in the process (several API processes each admit the rate: the limit protects each
process from one tenant, it is not a quota). Only authenticated tenants get a bucket, so the
table is bounded by the number of tenants.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from event_collector.kit.errors import RateLimited


class RateLimiter:
    __slots__ = ("_buckets", "_clock", "burst", "rate", "what")

    def __init__(
        self,
        rate: float,
        burst: int,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.what = what
        self._clock = clock
        # tenant -> [tokens left, when they were counted]
        self._buckets: dict[str, list[float]] = {}

    def admit(self, tenant: str) -> None:
        """Take one token from the tenant's bucket, or raise :class:`RateLimited`."""
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = [float(self.burst), now]
        tokens = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return
        bucket[0] = tokens
        retry_after = max(1, math.ceil((1.0 - tokens) / self.rate))
        raise RateLimited(
            f"tenant {tenant!r} sent more than {self.rate:g} requests per second "
            f"(burst {self.burst}) {self.what}; retry after {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def rate_limiter(rate: float, burst: int | None, what: str) -> RateLimiter | None:
    """The limiter a setting pair asks for: none when the rate is 0 (off); the burst defaults to
    one second's worth of requests."""
    if rate <= 0:
        return None
    return RateLimiter(rate, burst if burst is not None else max(1, math.ceil(rate)), what)

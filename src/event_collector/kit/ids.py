"""Time-ordered identifiers: UUIDv7 (RFC 9562), which Python 3.11's ``uuid`` module lacks.

Generated event ids are UUIDv7 rather than random (v4): ids created close in time sort close
together, so the primary-key index takes them at its right edge instead of at random pages.
On SQLite a random key dirtied several B-tree pages per insert (see bench/event_ids.py).

Layout (RFC 9562 §5.7): 48 bits of Unix time in milliseconds, the version (7), 12 bits of
``rand_a`` used here as a counter (method 1 of §6.2), the variant (0b10), 62 random bits.
Within one millisecond the counter orders the ids of this process: it starts at a random value
below 2**11 each millisecond (leaving room to count) and, if it ever overflows, the timestamp
borrows the next millisecond. A clock that steps back keeps the last timestamp, so the ids of
one process never go backwards.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

_COUNTER_MAX = 0xFFF
_RAND_B_MASK = (1 << 62) - 1
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)


def uuid7() -> uuid.UUID:
    """A new UUIDv7: time-ordered, and strictly increasing within this process."""
    global _last_ms, _counter
    random_bits = int.from_bytes(os.urandom(10))  # 80 bits: 62 for rand_b, 11 for the counter
    now_ms = time.time_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = random_bits >> 69
        elif _counter < _COUNTER_MAX:
            _counter += 1
        else:
            _last_ms += 1
            _counter = 0
        value = (
            ((_last_ms & 0xFFFF_FFFF_FFFF) << 80)
            | _VERSION_AND_VARIANT
            | (_counter << 64)
            | (random_bits & _RAND_B_MASK)
        )
    return uuid.UUID(int=value)


def uuid7_time_ms(value: uuid.UUID) -> int:
    """The Unix time, in milliseconds, a UUIDv7 carries."""
    return value.int >> 80

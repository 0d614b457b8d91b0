from __future__ import annotations

from datetime import UTC, datetime


def isoformat_z(value: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix, microsecond precision."""
    # isoformat is several times cheaper than strftime (this runs for every event answered).
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" → "Z"


def parse_timestamp(value: str) -> datetime:
    """Parse ISO-8601; a naive value is taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "+"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

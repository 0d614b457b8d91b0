from __future__ import annotations

ALL_SCOPES: tuple[str, ...] = (
    "events:read",
    "events:write",
    "subscriptions:read",
    "subscriptions:write",
    "jobs:read",
    "jobs:write",
)


def parse_scopes(value: str | None) -> list[str]:
    return [scope for scope in (value or "").split() if scope]

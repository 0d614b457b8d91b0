"""The outbox channel (the embedded default): nothing leaves the service.

A notification is rendered and stored as ``sent`` in the transaction that claims its items, so
it exists exactly once; operators and integrations read it through ``GET /api/v1/notifications``.
"""

from __future__ import annotations

OUTBOX = "outbox"
SENT_ON_CLAIM = frozenset({OUTBOX})
"""Channels whose notifications are complete when stored."""

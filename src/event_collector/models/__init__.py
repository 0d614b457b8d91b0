"""Every table of the service, on one shared metadata (``kit.db.metadata``)."""

from event_collector.models.event import event_table
from event_collector.models.subscription import (
    delivery_attempt_table,
    delivery_table,
    subscription_table,
)
from event_collector.models.tenant import oauth_client_table, tenant_table

__all__ = [
    "delivery_attempt_table",
    "delivery_table",
    "event_table",
    "oauth_client_table",
    "subscription_table",
    "tenant_table",
]

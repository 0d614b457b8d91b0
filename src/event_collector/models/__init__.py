"""Every table of the service, on one shared metadata (``kit.db.metadata``)."""

from event_collector.models.event import event_table
from event_collector.models.tenant import oauth_client_table, tenant_table

__all__ = ["event_table", "oauth_client_table", "tenant_table"]

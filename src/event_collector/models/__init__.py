"""Every table of the service, on one shared metadata (``kit.db.metadata``)."""

from event_collector.models.delivery import delivery_attempt_table, delivery_table
from event_collector.models.event import event_table
from event_collector.models.jobs import job_run_table, job_table
from event_collector.models.notifications import (
    email_settings_table,
    notification_ledger_table,
    notification_table,
)
from event_collector.models.read_model import (
    READ_MODEL_TABLES,
    customer_table,
    price_history_table,
    price_table,
    product_table,
    read_model_problem_table,
    stock_episode_table,
    stock_history_table,
    stock_level_table,
    stock_table,
    variant_table,
    wishlist_item_table,
    wishlist_table,
)
from event_collector.models.subscription import subscription_table
from event_collector.models.tenant import oauth_client_table, tenant_table

__all__ = [
    "READ_MODEL_TABLES",
    "customer_table",
    "delivery_attempt_table",
    "delivery_table",
    "email_settings_table",
    "event_table",
    "job_run_table",
    "job_table",
    "notification_ledger_table",
    "notification_table",
    "oauth_client_table",
    "price_history_table",
    "price_table",
    "product_table",
    "read_model_problem_table",
    "stock_episode_table",
    "stock_history_table",
    "stock_level_table",
    "stock_table",
    "subscription_table",
    "tenant_table",
    "variant_table",
    "wishlist_item_table",
    "wishlist_table",
]

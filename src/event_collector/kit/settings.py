"""Typed settings read once from ``EC_*`` environment variables.

Nobody else reads ``os.environ``: every component receives the :class:`Settings` instance built in
the application factory or the CLI, so a bad value fails at start-up with a clear message.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from event_collector.kit import awsallow
from event_collector.kit.errors import ConfigurationError

DEFAULT_SQLITE_FILE = "event-collector.db"


class TrustedIssuer(BaseModel):
    """An external token issuer (e.g. a Keycloak realm) whose JWTs are accepted."""

    model_config = ConfigDict(extra="forbid")

    issuer: str
    jwks_url: str
    audience: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EC_", extra="ignore", frozen=True)

    # Storage
    database_url: str = Field(
        default=f"sqlite+aiosqlite:///./{DEFAULT_SQLITE_FILE}",
        description="SQLAlchemy URL: sqlite+aiosqlite:///path.db or postgresql+asyncpg://…",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_connect_timeout: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="Seconds to open a database connection before answering 503.",
    )
    database_pool_timeout: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="Seconds to wait for a free pooled connection before answering 503.",
    )
    database_statement_timeout: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="Seconds a statement may run (server-side on PostgreSQL, plus a client-side "
        "bound for a server that does not answer; SQLite's busy timeout).",
    )
    database_bulk_statement_timeout: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="Seconds a bulk read (a notification job's rule query) may run.",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    auto_migrate: bool | None = Field(
        default=None,
        description="Apply migrations when `serve` starts; default: on for SQLite, off otherwise.",
    )

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="Base URL users reach us at.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_batch_body_bytes: int = Field(default=32 << 20, ge=1024)
    max_batch_events: int = Field(default=500, ge=1, le=10_000)
    max_decoded_payload_bytes: int = Field(default=256 << 10, ge=1)
    # Slow and abusive clients (kit.server: the HTTP protocol of `serve`; docs/limits.md)
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Close a connection whose request head is not complete this long after it "
        "connected or began the request.",
    )
    http_body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Close a connection whose request body pauses longer than this between "
        "two pieces.",
    )
    http_keepalive_timeout_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="Close an idle keep-alive connection after this."
    )
    http_max_connections: int = Field(
        default=900,
        ge=1,
        le=1_000_000,
        description="Open connections per process; one more is answered 503 and closed.",
    )
    rate_limit_api_per_second: float = Field(
        default=0.0, ge=0, description="Per-tenant API requests per second (0: no limit)."
    )
    rate_limit_api_burst: int | None = Field(default=None, ge=1)
    rate_limit_ingest_per_second: float = Field(
        default=0.0, ge=0, description="Per-tenant ingest requests per second (0: no limit)."
    )
    rate_limit_ingest_burst: int | None = Field(default=None, ge=1)
    max_subscriptions_per_tenant: int = Field(default=100, ge=1, le=1_000_000)
    max_jobs_per_tenant: int = Field(default=100, ge=1, le=1_000_000)

    # Auth
    key_dir: Path = Field(default=Path("./.event-collector"), description="Signing keys live here.")
    token_issuer: str = "event-collector"
    token_lifetime: timedelta = timedelta(hours=1)
    token_cache_seconds: float = Field(default=5.0, ge=0)
    trusted_issuers: list[TrustedIssuer] = Field(default_factory=list)
    bootstrap_demo: bool = Field(
        default=True,
        description="On the first start with no tenant, create a demo tenant and client.",
    )

    # Ingest
    ingest_group_max_events: int = Field(default=2000, ge=1)
    ingest_max_inflight_groups: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Concurrent group-commit transactions; default 1 on SQLite, 2 otherwise.",
    )

    # Operations
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = Field(
        default=False,
        description="Log one line per HTTP request: method, route, status, duration, request id.",
    )

    # Retention (ops.retention): 0 keeps rows forever.
    retention_delivered_days: float = Field(
        default=30.0,
        ge=0,
        description="Delete delivered deliveries (and their attempt logs) this many days old.",
    )
    retention_failed_days: float = Field(
        default=0.0,
        ge=0,
        description="Delete dead-lettered (failed) deliveries this many days old; 0 keeps them "
        "for replay.",
    )
    retention_events_days: float = Field(
        default=0.0,
        ge=0,
        description="Delete events this many days old that nothing still needs; 0 keeps them.",
    )
    retention_batch_size: int = Field(default=1000, ge=1, le=50_000)
    retention_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often the worker applies retention."
    )

    # Delivery (used by the delivery capability)
    aws_endpoint_url: str | None = None
    aws_server_credentials_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Destinations subscriptions without their own AWS keys may be sent to with "
        "the server's credentials (account ids, ARN / queue URL prefixes, *; `<tenant>=` limits "
        "an entry to a tenant). Empty: refused.",
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dispatcher_enabled: bool = Field(
        default=True, description="Run the delivery dispatcher inside `serve`."
    )
    delivery_batch_size: int = Field(default=1000, ge=1, le=5000)
    delivery_lease_seconds: float = Field(default=60.0, gt=0)
    delivery_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        description="Seconds before each retry (comma-separated); attempts = 1 + its length.",
    )
    delivery_retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    delivery_max_retry_after_seconds: float = Field(default=86400.0, ge=0)
    delivery_concurrency_per_destination: int = Field(default=16, ge=1, le=256)
    delivery_max_in_flight: int = Field(default=2000, ge=1)
    delivery_http_timeout_seconds: float = Field(default=15.0, gt=0)
    delivery_breaker_failures: int = Field(default=5, ge=1)
    delivery_breaker_cooldown_seconds: float = Field(default=30.0, ge=0)
    delivery_deactivate_after: timedelta = Field(
        default=timedelta(days=5),
        description="Deactivate a subscription whose deliveries failed continuously this long.",
    )
    delivery_idle_poll_seconds: float = Field(default=30.0, gt=0)

    # Jobs (the notification job scheduler, docs/jobs.md)
    scheduler_enabled: bool = Field(
        default=True, description="Run the job scheduler inside `serve`."
    )
    scheduler_missed_runs: Literal["coalesce", "skip"] = Field(
        default="coalesce",
        description="Occurrences missed while no scheduler ran: one run for them all, or none.",
    )
    scheduler_lease_seconds: float = Field(default=60.0, gt=0)
    scheduler_idle_poll_seconds: float = Field(default=60.0, gt=0)
    jobs_runner: str | None = Field(
        default=None,
        description="`module:factory` building the run executor (default: the notification rules).",
    )
    scheduler_clock: str | None = Field(
        default=None, description="Tests only: `module:factory` building the scheduler's clock."
    )

    # Notifications (used by the notification capability)
    email_provider: Literal["outbox", "smtp", "sendgrid"] = "outbox"
    email_from: str = "notifications@localhost"
    sendgrid_api_url: str = "https://api.sendgrid.com"
    sendgrid_api_key: str | None = Field(default=None, repr=False)
    sendgrid_timeout_seconds: float = Field(default=30.0, gt=0)
    sendgrid_max_attempts: int = Field(default=5, ge=1, le=20)
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_starttls: bool = False
    notify_max_items: int = Field(default=50, ge=1, le=1000)
    notify_templates_dir: Path | None = Field(
        default=None, description="Jinja templates that override the built-in email templates."
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite:///"):
            value = "sqlite+aiosqlite:///" + value.removeprefix("sqlite:///")
        if not (
            value.startswith("sqlite+aiosqlite://") or value.startswith("postgresql+asyncpg://")
        ):
            raise ValueError(
                "must be sqlite:///<file> or postgresql://user[:password]@host[:port]/database"
            )
        return value

    @field_validator("webhook_allowed_hosts", "aws_server_credentials_allow", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("delivery_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("delivery_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must be >= 0 seconds")
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if "/" in host:
                try:
                    ipaddress.ip_network(host, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{host!r} is not a valid network: {exc}") from None
        return value

    @field_validator("aws_server_credentials_allow")
    @classmethod
    def _check_aws_allow(cls, value: list[str]) -> list[str]:
        awsallow.parse(value)  # ValueError names the bad entry
        return value

    @cached_property
    def aws_server_credentials(self) -> awsallow.ServerCredentialsPolicy:
        return awsallow.ServerCredentialsPolicy(self.aws_server_credentials_allow)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def inflight_ingest_groups(self) -> int:
        if self.ingest_max_inflight_groups is not None:
            return self.ingest_max_inflight_groups
        return 1 if self.is_sqlite else 2

    @cached_property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"EC_{'_'.join(str(p) for p in err['loc'][:1]).upper()}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
    except SettingsError as exc:
        # A complex value (a list of objects) that is not JSON: pydantic-settings names the
        # field, not the variable, and keeps the parser's reason in the cause.
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"EC_{field.group(1).upper()}" if field else "an EC_* variable"
        reason = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise ConfigurationError(f"invalid configuration: {name}: not valid JSON{reason}") from None

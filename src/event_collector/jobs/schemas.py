"""Job shapes, with the seed's field names (snake_case, plus ``scheduleExpression`` as written).

Pydantic checks each field on its own; the service checks what depends on several fields or on
the stored job (the effective schedule in its time zone, ``template_id``).
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)

from event_collector.kit.jsondoc import FreeFormJson
from event_collector.subscriptions.schemas import SubscriptionId

NOTIFICATIONS = ("REMINDER", "PRICE_DROP", "LOW_STOCK", "BACK_IN_STOCK")

# Ids travel in URL paths as subscription ids do.
JobId = SubscriptionId


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _check_notification(value: str) -> str:
    if value not in NOTIFICATIONS:
        raise ValueError(f"must be one of {', '.join(NOTIFICATIONS)}")
    return value


MAX_ITEMS_IN_EMAIL = 1000


def _check_item_count(value: int) -> int:
    if value == 0 or value < -1 or value > MAX_ITEMS_IN_EMAIL:
        raise ValueError(f"must be -1 (the whole wishlist) or 1 to {MAX_ITEMS_IN_EMAIL}")
    return value


def _blank_is_absent(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Notification = Annotated[
    str,
    BeforeValidator(_upper),
    AfterValidator(_check_notification),
    Field(json_schema_extra={"enum": list(NOTIFICATIONS)}),
]


def _not_a_boolean(value: Any) -> Any:
    # JSON true is not 1 (lax pydantic would take it); 250.0 is still 250.
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    return value


ItemCount = Annotated[
    int,
    BeforeValidator(_not_a_boolean),
    AfterValidator(_check_item_count),
    Field(
        description=f"-1 = the whole wishlist, or 1 to {MAX_ITEMS_IN_EMAIL}.",
        json_schema_extra={"minimum": -1, "maximum": MAX_ITEMS_IN_EMAIL, "not": {"const": 0}},
    ),
]
# No control characters (PostgreSQL text cannot hold NUL).
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Expression = Annotated[
    Annotated[str, StringConstraints(max_length=256, pattern=_PRINTABLE)] | None,
    BeforeValidator(_blank_is_absent),
]
TemplateId = Annotated[str, StringConstraints(max_length=255, pattern=_PRINTABLE)]
TimeZone = Annotated[str, StringConstraints(max_length=64, pattern=_PRINTABLE)]
# Stored as JSON and rendered into emails and stored notifications (text columns): no NUL
# anywhere, bounded nesting (kit.jsondoc).
JobParameters = Annotated[dict[str, Any], FreeFormJson]
_SCHEDULE = "A standard 5-field cron expression (minute hour day-of-month month day-of-week)."
_EXPRESSION = (
    "Optional; wins over `schedule` when present: a 5-field cron expression, AWS style "
    "`cron(min hour day-of-month month day-of-week year)` (day-of-week 1-7 = SUN-SAT, `?` "
    "in one of the day fields) or `rate(N minute|minutes|hour|hours|day|days)`."
)
_TIMEZONE = "IANA time zone the schedule is read in (default UTC)."
_TEMPLATE = (
    'SendGrid template id; required unless `job_parameters.output` is "message" (the job '
    "only publishes NOTIFICATION messages)."
)
_PARAMETERS = (
    "`campaign_id`, `utm_medium` and any other keys (thresholds …): free-form JSON, nested at "
    "most 32 levels, with no NUL character (\\u0000) in any key or string."
)


# What the service's checks of a whole job require, stated for the OpenAPI document: a
# scheduled job has a schedule; a job that sends email has a template. The cron pattern is the
# plain numeric form (the server also takes ranges, lists, steps and the AWS forms).
_CRON = (
    r"^(?:[1-5]?[0-9]|\*) (?:1?[0-9]|2[0-3]|\*) (?:[1-9]|1[0-9]|2[0-8]|\*) "
    r"(?:[1-9]|1[0-2]|\*) (?:[0-6]|\*)$"
)
_JOB_RULES: dict[str, Any] = {
    "allOf": [
        {
            "anyOf": [
                {"required": ["is_scheduled"], "properties": {"is_scheduled": {"const": False}}},
                {
                    "required": ["schedule"],
                    "properties": {"schedule": {"type": "string", "pattern": "[^ ]"}},
                },
                {
                    "required": ["scheduleExpression"],
                    "properties": {"scheduleExpression": {"type": "string", "pattern": "[^ ]"}},
                },
            ]
        },
        {
            "anyOf": [
                {
                    "required": ["template_id"],
                    "properties": {"template_id": {"type": "string", "minLength": 1}},
                },
                {
                    "required": ["job_parameters"],
                    "properties": {
                        "job_parameters": {
                            "required": ["output"],
                            "properties": {"output": {"const": "message"}},
                        }
                    },
                },
            ]
        },
    ]
}


def _strings(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The string schemas of a field (itself, or the string member of ``X | None``)."""
    return [v for v in schema.get("anyOf", [schema]) if v.get("type") == "string"]


def _time_zones(schema: dict[str, Any]) -> None:
    for variant in _strings(schema):
        variant.pop("pattern", None)
        variant["enum"] = sorted(available_timezones())


def _cron(schema: dict[str, Any]) -> None:
    for variant in _strings(schema):
        variant["pattern"] = f"^(?:{_CRON[1:-1]}|[ ]*)$"  # blank: absent


class JobIn(BaseModel):
    """A job as a client creates it (POST /api/v1/jobs)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_JOB_RULES)

    id: JobId | None = Field(default=None, description="Generated (UUID) when absent.")
    deleted: StrictBool = False
    is_active: StrictBool = True
    is_scheduled: StrictBool = True
    job_parameters: JobParameters = Field(default_factory=dict, description=_PARAMETERS)
    notification: Notification
    number_of_items_in_email: ItemCount = -1
    schedule: Expression = Field(default=None, description=_SCHEDULE, json_schema_extra=_cron)
    scheduleExpression: Expression = Field(
        default=None, description=_EXPRESSION, json_schema_extra=_cron
    )
    timezone: TimeZone = Field(default="UTC", description=_TIMEZONE, json_schema_extra=_time_zones)
    template_id: TemplateId | None = Field(default=None, description=_TEMPLATE)


class JobUpdate(BaseModel):
    """A PUT body: fields present replace the stored ones; ``job_parameters`` merge key by key.

    Read-only fields a GET returns (``next_run_at`` …) are ignored, so a GET body can be sent back.
    """

    model_config = ConfigDict(extra="ignore")

    id: JobId | None = Field(
        default=None,
        description="Read-only: the path's id; a body may carry it back unchanged, a different "
        "one answers 400.",
        json_schema_extra={"readOnly": True},
    )
    deleted: StrictBool | None = None
    is_active: StrictBool | None = None
    is_scheduled: StrictBool | None = None
    job_parameters: JobParameters | None = Field(default=None, description=_PARAMETERS)
    notification: Notification | None = None
    number_of_items_in_email: ItemCount | None = None
    schedule: Expression = Field(default=None, description=_SCHEDULE, json_schema_extra=_cron)
    scheduleExpression: Expression = Field(
        default=None, description=_EXPRESSION, json_schema_extra=_cron
    )
    timezone: TimeZone | None = Field(
        default=None, description=_TIMEZONE, json_schema_extra=_time_zones
    )
    template_id: TemplateId | None = Field(default=None, description=_TEMPLATE)


# --- responses (documentation; the endpoints render dicts) ---------------------------------


class RunOut(BaseModel):
    id: str
    job_id: str
    status: str = Field(description="queued | running | succeeded | failed")
    trigger: str = Field(description="schedule | manual")
    scheduled_for: str | None = Field(description="The occurrence (UTC); null for manual runs.")
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int = Field(description="Starts; above 1 when taken over after a crash.")
    counts: dict[str, int] | None = Field(
        description="considered, sent, errors, skipped_<reason> (set when finished)."
    )
    error: str | None = Field(description="Why the run failed.")


class JobOut(BaseModel):
    id: str
    deleted: bool
    is_active: bool
    is_scheduled: bool
    job_parameters: dict[str, Any]
    notification: str
    number_of_items_in_email: int
    schedule: str | None
    scheduleExpression: str | None
    timezone: str
    template_id: str | None
    schedule_description: str | None = Field(description="The schedule in plain words.")
    next_run_at: str | None = Field(
        description="Next occurrence (UTC); null while the job cannot run."
    )
    next_run_at_local: str | None = Field(description="The same instant in the job's timezone.")
    last_run: RunOut | None
    created_at: str
    updated_at: str


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class RunAccepted(BaseModel):
    run_id: str
    status: str


class DryRunOut(BaseModel):
    messages: list[dict[str, Any]]
    counts: dict[str, int]

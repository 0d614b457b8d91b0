"""Schemathesis hooks for tests/test_openapi_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

A cursor is opaque: only a `next_cursor` the server issued is meaningful, and the document says
so rather than spelling its encoding. A positive case never invents one (a negative case still
may, and must be refused).

A job update is judged on the job it produces: clearing a job's template is valid only for a job
that publishes messages, clearing its schedule only for an unscheduled one. A schema cannot
depend on the stored job, so a positive update does not clear those (the server answers 400
with the reason when it would leave the job invalid).

A job's `job_parameters` is free-form JSON in which no key or string may hold a NUL, at any depth
(PostgreSQL cannot store one): the description says so, but a schema can only say it with a
recursive reference, which the generators do not follow. A positive case drops the NULs.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = getattr(case, "meta", None)
    positive = meta is None or meta.generation.mode == GenerationMode.POSITIVE
    if not positive:
        return case
    if case.query and "cursor" in case.query:
        case.query = {name: value for name, value in case.query.items() if name != "cursor"}
    if (
        case.method == "PUT"
        and case.path == "/api/v1/jobs/{job_id}"
        and isinstance(case.body, dict)
    ):
        case.body = _keeps_the_job_valid(case.body)
    if (
        case.path.startswith("/api/v1/jobs")
        and isinstance(case.body, dict)
        and "job_parameters" in case.body
    ):
        case.body = {**case.body, "job_parameters": _without_nul(case.body["job_parameters"])}
    return case


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


_CLEARABLE_BY_STATE = frozenset({"template_id", "schedule", "scheduleExpression", "is_scheduled"})


def _keeps_the_job_valid(body: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in body.items() if not (k in _CLEARABLE_BY_STATE and v is None)}
    if body.get("is_scheduled") is True and not any(
        isinstance(body.get(k), str) and body[k].strip() for k in ("schedule", "scheduleExpression")
    ):
        del body["is_scheduled"]  # scheduling a job that may have no schedule
    parameters = body.get("job_parameters")
    templated = isinstance(body.get("template_id"), str) and body["template_id"]
    if isinstance(parameters, dict) and "output" in parameters and not templated:
        body["job_parameters"] = {k: v for k, v in parameters.items() if k != "output"}
    return body

"""Schemathesis hooks for tests/test_openapi_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

A cursor is opaque: only a `next_cursor` the server issued is meaningful, and the document says
so rather than spelling its encoding. A positive case never invents one (a negative case still
may, and must be refused).

A job update is judged on the job it produces: clearing a job's template is valid only for a job
that publishes messages, clearing its schedule only for an unscheduled one. A schema cannot
depend on the stored job, so a positive update does not clear those (the server answers 400
with the reason when it would leave the job invalid).
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
    return case


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

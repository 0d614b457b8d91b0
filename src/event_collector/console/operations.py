"""Which API operation each console form stands for: the console adds no second way to change
state. Every POST handler of the console calls the service function of the API operation named
here (``tests/console/test_operations.py`` checks every console form is listed and every
operation exists in the OpenAPI document).
"""

from __future__ import annotations

# (method, console path) → (method, API path). Sign-in and sign-out only make or end the
# browser session: sign-in is the token endpoint, sign-out changes no stored state (None).
FORM_OPERATIONS: dict[tuple[str, str], tuple[str, str] | None] = {
    ("POST", "/console/sign-in"): ("POST", "/oauth/token"),
    ("POST", "/console/sign-out"): None,
    ("POST", "/console/subscriptions/new"): ("POST", "/api/v1/event-subscription"),
    ("POST", "/console/subscriptions/{subscription_id}"): (
        "PUT",
        "/api/v1/event-subscription/{subscription_id}",
    ),
    ("POST", "/console/subscriptions/{subscription_id}/activate"): (
        "PUT",
        "/api/v1/event-subscription/{subscription_id}/activate",
    ),
    ("POST", "/console/subscriptions/{subscription_id}/deactivate"): (
        "PUT",
        "/api/v1/event-subscription/{subscription_id}/deactivate",
    ),
    ("POST", "/console/subscriptions/{subscription_id}/test"): (
        "POST",
        "/api/v1/event-subscription/{subscription_id}/test",
    ),
    ("POST", "/console/deliveries/replay"): ("POST", "/api/v1/deliveries/replay"),
    ("POST", "/console/deliveries/replay-since"): (
        "POST",
        "/api/v1/event-subscription/{subscription_id}/replay",
    ),
    ("POST", "/console/jobs/new"): ("POST", "/api/v1/jobs"),
    ("POST", "/console/jobs/{job_id}"): ("PUT", "/api/v1/jobs/{job_id}"),
    ("POST", "/console/jobs/{job_id}/delete"): ("DELETE", "/api/v1/jobs/{job_id}"),
    ("POST", "/console/jobs/{job_id}/run"): ("POST", "/api/v1/jobs/{job_id}/run"),
    ("POST", "/console/jobs/{job_id}/dry-run"): ("POST", "/api/v1/jobs/{job_id}/run"),
}

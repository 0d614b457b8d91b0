"""What a client reads when it gets something wrong, and what the document and the protocol
promise beyond single operations: validation messages in plain words (issue 13 item 1), every
declared pattern explained, OPTIONS / 405 with Allow, links, RFC 6749's unknown parameters."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from event_collector.kit.validation import PATTERN_MEANINGS
from tests.conftest import TenantFixture
from tests.jobs.helpers import seed_shaped

SOURCE = Path(__file__).resolve().parent.parent / "src" / "event_collector"
REGEX_HINTS = re.compile(r"\^|\$|\\x|\[\^|should match|Value error|Input should|Field required")


def _problems(response: httpx.Response) -> tuple[str, list[dict[str, Any]]]:
    assert response.status_code == 400, response.text
    body = response.json()
    return body["detail"], body.get("errors", [])


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "words"),
    [
        # A pattern: said in words, never the expression.
        ("PUT", "/api/v1/email-settings", {"reply_to_email": "nobody"}, "reply_to_email", "email"),
        ("POST", "/api/v1/jobs", seed_shaped(template_id="d-\u0001"), "template_id", "control"),
        # Our own validators, without pydantic's "Value error, ".
        (
            "POST",
            "/api/v1/jobs",
            seed_shaped(number_of_items_in_email=0),
            "number_of_items_in_email",
            "-1",
        ),
        # Types and presence.
        ("POST", "/api/v1/jobs", seed_shaped(is_active="yes"), "is_active", "true or false"),
        ("POST", "/api/v1/jobs", {"schedule": "0 9 * * *"}, "notification", "is required"),
        (
            "POST",
            "/api/v1/event-subscription",
            {"entityType": "ORDER"},
            "destination",
            "is required",
        ),
        (
            "POST",
            "/api/v1/event-subscription/x/replay",
            {"since": 0},
            "since",
            "ISO-8601",
        ),
    ],
)
async def test_validation_problems_name_the_field_in_plain_words(
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    method: str,
    path: str,
    body: Any,
    field: str,
    words: str,
) -> None:
    response = await client.request(method, path, json=body, headers=tenant.headers)
    detail, errors = _problems(response)
    assert detail.startswith(f"{field}: "), detail
    assert words in detail, detail
    assert errors, response.text
    for problem in errors:
        assert problem["loc"], problem  # never an empty location
        assert not REGEX_HINTS.search(problem["msg"]), problem


async def test_a_query_problem_names_the_parameter(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    response = await client.get("/api/v1/events?limit=0", headers=tenant.headers)
    detail, errors = _problems(response)
    assert detail == "query.limit: must be at least 1"
    assert errors[0]["loc"] == ["query", "limit"]


async def test_a_body_that_is_not_an_object_is_located_at_the_body(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    response = await client.post("/api/v1/jobs", json=[1, 2], headers=tenant.headers)
    detail, errors = _problems(response)
    assert errors[0]["loc"] == ["body"]
    assert detail == "body: must be a JSON object"


def _enforced_patterns() -> set[str]:
    """Every ``pattern=`` given to pydantic or FastAPI (Field, StringConstraints, Query …) in
    the source: a literal, or a module-level constant."""
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "pattern":
                if isinstance(node.value, ast.Constant):
                    found.add(node.value.value)
                elif isinstance(node.value, ast.Name):
                    found.add(constants[node.value.id])
    return found


def test_every_enforced_pattern_has_a_sentence() -> None:
    """A client reads the sentence, never the expression (issue 13 item 1)."""
    patterns = _enforced_patterns()
    assert len(patterns) >= 3, patterns
    assert patterns <= PATTERN_MEANINGS.keys(), patterns - PATTERN_MEANINGS.keys()


async def test_options_answers_allow_with_every_method_of_the_path(
    client: httpx.AsyncClient,
) -> None:
    # GET is a FastAPI route, POST a raw route: one Allow lists both.
    response = await client.options("/api/v1/events")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, OPTIONS, POST"
    response = await client.options("/api/v1/jobs/some-job")
    assert response.headers["allow"] == "DELETE, GET, OPTIONS, POST, PUT"
    # A concrete path wins over a templated one, as in OpenAPI.
    response = await client.options("/api/v1/events/batch")
    assert response.headers["allow"] == "OPTIONS, POST"


def test_the_allow_route_is_the_last_route(app: FastAPI) -> None:
    # It matches every path: a route or mount added after it would never be reached.
    assert getattr(app.router.routes[-1], "path", None) == "/{path:path}"


async def test_an_unserved_method_is_405_with_allow_and_an_unknown_path_404(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    # The request guard authenticates every /api/ request first (kit.middleware): 401 before 405.
    assert (await client.request("PATCH", "/api/v1/events/batch")).status_code == 401
    response = await client.request("PATCH", "/api/v1/events/batch", headers=tenant.headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "OPTIONS, POST"
    assert response.json()["error"] == "MethodNotAllowed"
    response = await client.request("TRACE", "/healthz")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, OPTIONS")
    response = await client.options("/no/such/path")
    assert response.status_code == 404
    assert "allow" not in response.headers


def test_creates_link_to_the_operations_on_what_they_created(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    links = paths["/api/v1/event-subscription"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"] for link in links.values()}
    by_id = {
        op["operationId"]: (method, path)
        for path, ops in paths.items()
        for method, op in ops.items()
    }
    linked = {by_id[target][1] for target in targets}
    assert {
        "/api/v1/event-subscription/{subscription_id}",
        "/api/v1/event-subscription/{subscription_id}/test",
        "/api/v1/event-subscription/{subscription_id}/activate",
        "/api/v1/event-subscription/{subscription_id}/deactivate",
        "/api/v1/event-subscription/{subscription_id}/deliveries",
        "/api/v1/event-subscription/{subscription_id}/replay",
    } <= linked
    for link in links.values():
        assert link["parameters"] == {"subscription_id": "$response.body#/id"}
    run_links = paths["/api/v1/jobs/{job_id}/run"]["post"]["responses"]["202"]["links"]
    get_run = run_links["get_run_api_v1_jobs__job_id__runs__run_id__get"]
    assert get_run["parameters"] == {
        "job_id": "$request.path.job_id",
        "run_id": "$response.body#/run_id",
    }


async def test_unknown_token_parameters_are_ignored_even_repeated(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    # RFC 6749 §3.2: unrecognized parameters are ignored; only a known one may not repeat.
    form = (
        f"grant_type=client_credentials&client_id={tenant.client_id}"
        f"&client_secret={tenant.client_secret}&extra=1&extra=2"
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post("/oauth/token", content=form, headers=headers)
    assert response.status_code == 200, response.text
    response = await client.post(
        "/oauth/token", content=form + "&grant_type=client_credentials", headers=headers
    )
    assert response.status_code == 400
    assert response.json()["error_description"] == "parameter 'grant_type' is repeated"


async def test_runs_of_a_deleted_job_answer_404_unless_asked_for(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    created = await client.post("/api/v1/jobs", json=seed_shaped(), headers=tenant.headers)
    assert created.status_code == 201, created.text
    job = created.json()["id"]
    assert (await client.get(f"/api/v1/jobs/{job}/runs", headers=tenant.headers)).status_code == 200
    deleted = await client.delete(f"/api/v1/jobs/{job}", headers=tenant.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/jobs/{job}/runs", headers=tenant.headers)
    assert gone.status_code == 404
    kept = await client.get(f"/api/v1/jobs/{job}/runs?include_deleted=true", headers=tenant.headers)
    assert kept.status_code == 200
    assert kept.json()["items"] == []

"""The console adds no second way to change state: every console route that accepts a POST is
listed in ``console.operations`` with the API operation it stands for, and that operation exists
in the OpenAPI document."""

from __future__ import annotations

from fastapi.routing import APIRoute

from event_collector.app import create_app
from event_collector.console.endpoints import ROUTERS
from event_collector.console.operations import FORM_OPERATIONS
from tests.conftest import make_settings


def test_every_console_form_maps_to_an_api_operation(tmp_path) -> None:
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path))
    schema = app.openapi()
    # The console's routers as install() mounts them (their routes carry the /console prefix).
    routes = [route for router in ROUTERS for route in router.routes]
    assert all(isinstance(route, APIRoute) for route in routes)
    posts = {("POST", route.path) for route in routes if "POST" in route.methods}
    assert posts, "the console has forms"
    assert posts == set(FORM_OPERATIONS), "every console form is listed, nothing else"
    for form, operation in FORM_OPERATIONS.items():
        if operation is None:  # sign-out: ends the browser session, stores nothing
            continue
        method, path = operation
        assert path in schema["paths"], f"{form} → {operation}: no such API path"
        assert method.lower() in schema["paths"][path], f"{form} → {operation}: no such method"
    # Console pages are not API operations.
    assert not [path for path in schema["paths"] if path.startswith("/console")]
    # Every console route answers only GET or POST (no PUT/DELETE that forms cannot send).
    for route in routes:
        assert route.path.startswith("/console/") or route.path == "/console"
        assert route.methods <= {"GET", "POST"}, route.path

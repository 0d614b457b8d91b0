"""The `event-collector` command, run in-process against both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from event_collector.cli import app

runner = CliRunner()


@pytest.fixture
def cli_env(empty_database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "EC_DATABASE_URL": empty_database_url,
        "EC_KEY_DIR": str(tmp_path / "keys"),
    }


def run(env: dict[str, str], *args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args), env=env)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result.output


def test_tenant_and_client_administration(cli_env: dict[str, str]) -> None:
    assert "revision" in run(cli_env, "migrate")
    run(cli_env, "tenant", "create", "acme")
    assert "already exists" in run(cli_env, "tenant", "create", "acme", ok=False)
    assert "tenant ids" in run(cli_env, "tenant", "create", "bad tenant!", ok=False)

    created = json.loads(run(cli_env, "client", "create", "acme", "--name", "shop", "--json"))
    assert created["tenant"] == "acme"
    assert len(created["client_secret"]) >= 40
    reader = json.loads(
        run(cli_env, "client", "create", "acme", "--scope", "events:read", "--json")
    )
    assert reader["scopes"] == ["events:read"]
    assert "unknown scope" in run(cli_env, "client", "create", "acme", "--scope", "root", ok=False)
    assert "does not exist" in run(cli_env, "client", "create", "nobody", ok=False)

    clients = json.loads(run(cli_env, "client", "list", "acme", "--json"))
    assert {c["client_id"] for c in clients} == {created["client_id"], reader["client_id"]}
    assert all("secret" not in key for c in clients for key in c)  # never the secrets

    tenants = json.loads(run(cli_env, "tenant", "list", "--json"))
    assert tenants == [{"id": "acme", "created_at": tenants[0]["created_at"], "clients": 2}]

    run(cli_env, "client", "revoke", created["client_id"])
    assert "already revoked" in run(cli_env, "client", "revoke", created["client_id"], ok=False)
    assert json.loads(run(cli_env, "tenant", "list", "--json"))[0]["clients"] == 1

    run(cli_env, "tenant", "delete", "acme", "--yes")
    assert json.loads(run(cli_env, "tenant", "list", "--json")) == []
    assert "does not exist" in run(cli_env, "tenant", "delete", "acme", "--yes", ok=False)


def test_bad_configuration_fails_with_a_clear_message(cli_env: dict[str, str]) -> None:
    output = run({**cli_env, "EC_DATABASE_URL": "mysql://nope"}, "migrate", ok=False)
    assert "EC_DATABASE_URL" in output
    output = run({**cli_env, "EC_MAX_BATCH_EVENTS": "0"}, "migrate", ok=False)
    assert "EC_MAX_BATCH_EVENTS" in output

"""Start-up errors an operator can act on (issue 13 item 1): one line naming the setting and the
fix, exit code 1 (2 for a bad setting), no traceback unless asked for with --debug."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.operator.helpers import run_cli
from tests.test_serve import _free_port


def _run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(cwd, *args, **{"EC_KEY_DIR": str(cwd / "keys"), **env})


def _one_line_error(result: subprocess.CompletedProcess[str], exit_code: int = 1) -> str:
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "╭" not in result.stderr  # no Rich traceback frame either
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# Every long-running command (serve, worker, scheduler, jobs run) and the operator commands.
LONG_RUNNING = [["serve"], ["worker"], ["scheduler"], ["jobs", "run", "t-x", "job-x"]]


@pytest.mark.parametrize("command", [*LONG_RUNNING, ["tenant", "list"], ["migrate"]])
def test_unreachable_database_is_one_line(command: list[str], tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    result = _run(
        *command, cwd=tmp_path, EC_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/x"
    )
    line = _one_line_error(result)
    assert f"127.0.0.1:{port}" in line
    assert "connection refused" in line
    assert "EC_DATABASE_URL" in line


def test_debug_shows_the_traceback_too(tmp_path: Path) -> None:
    port = _free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/x"
    for args, env in [
        (["--debug", "tenant", "list"], {}),
        (["tenant", "list"], {"EC_LOG_LEVEL": "DEBUG"}),
    ]:
        result = _run(*args, cwd=tmp_path, EC_DATABASE_URL=url, **env)
        assert result.returncode == 1
        assert "ConnectionRefusedError" in result.stderr
        assert "connection refused" in result.stderr.splitlines()[-1]


async def test_serve_on_a_database_never_migrated_says_run_migrate(
    empty_database_url: str, tmp_path: Path
) -> None:
    # A real empty database of the session's backend (PostgreSQL: a new database; SQLite: a new
    # file), with auto-migration off as on PostgreSQL by default.
    url = empty_database_url.replace("+asyncpg", "").replace("+aiosqlite", "")
    for command in LONG_RUNNING:
        result = _run(*command, cwd=tmp_path, EC_DATABASE_URL=url, EC_AUTO_MIGRATE="false")
        line = _one_line_error(result)
        assert "never migrated" in line
        assert "run `event-collector migrate`" in line


def test_missing_postgres_database_and_role(tmp_path: Path) -> None:
    from tests.conftest import POSTGRES_ADMIN_URL

    base = POSTGRES_ADMIN_URL.rpartition("/")[0]
    missing_db = _run(
        "tenant", "list", cwd=tmp_path, EC_DATABASE_URL=f"{base}/nosuch_{uuid.uuid4().hex[:8]}"
    )
    if "connection refused" in missing_db.stderr:
        pytest.skip("no PostgreSQL server")
    assert "does not exist: create it" in _one_line_error(missing_db)
    host = base.rpartition("@")[2]
    missing_role = _run(
        "tenant", "list", cwd=tmp_path, EC_DATABASE_URL=f"postgresql://nosuch_role@{host}/postgres"
    )
    line = _one_line_error(missing_role)
    assert "refused the login" in line
    assert "EC_DATABASE_URL" in line


def test_sqlite_path_not_writable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = _run(
        "serve", cwd=tmp_path, EC_DATABASE_URL=f"sqlite:///{tmp_path / 'a-file' / 'x.db'}"
    )
    line = _one_line_error(result)
    assert "cannot open the SQLite file" in line
    assert "EC_DATABASE_URL" in line


def test_key_dir_not_writable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = _run(
        "serve",
        cwd=tmp_path,
        EC_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
        EC_KEY_DIR=str(tmp_path / "a-file" / "keys"),
    )
    line = _one_line_error(result)
    assert "EC_KEY_DIR" in line
    assert "cannot be created or written" in line


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EC_TRUSTED_ISSUERS", '[{"issuer": ', "EC_TRUSTED_ISSUERS: not valid JSON"),
        ("EC_DATABASE_URL", "mysql://db/x", "postgresql://user[:password]@host[:port]/database"),
    ],
)
def test_bad_settings_are_one_line(
    variable: str, value: str, expected: str, tmp_path: Path
) -> None:
    line = _one_line_error(_run("tenant", "list", cwd=tmp_path, **{variable: value}), exit_code=2)
    assert expected in line
    assert "Value error" not in line


def test_version(tmp_path: Path) -> None:
    result = _run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "event-collector 0.1.0"


def test_a_database_not_answering_is_named_not_the_apis_sentence(tmp_path: Path) -> None:
    # What the database layer raises when it cannot get an answer, with no driver error behind
    # it: the operator still gets the database and the setting, not "retry shortly".
    from event_collector.kit.errors import DatabaseUnavailable
    from event_collector.ops.diagnose import explain
    from tests.conftest import make_settings

    settings = make_settings("postgresql://postgres@db.internal:6543/ec", tmp_path)
    line = explain(DatabaseUnavailable(), settings)
    assert line == (
        "cannot reach PostgreSQL at db.internal:6543, database ec: it does not answer "
        "(EC_DATABASE_URL)"
    )

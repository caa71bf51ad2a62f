"""Shared fixtures: every test gets its own MAILCLI_HOME and a CLI driven as a user would."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailcli.cli.app import app

OPERATOR_TZ = "Europe/Moscow"
ISOLATED_VARS = ("MAILCLI_DB", "MAILCLI_GATEWAY_URL", "MAILCLI_GATEWAY_TOKEN", "MAILCLI_DEBUG")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated mailcli home (not created yet), the operator in Europe/Moscow, Rich pinned to 200 columns."""
    path = tmp_path / "home"
    monkeypatch.setenv("MAILCLI_HOME", str(path))
    monkeypatch.setenv("MAILCLI_TZ", OPERATOR_TZ)
    monkeypatch.setenv("COLUMNS", "200")
    for var in ISOLATED_VARS:
        monkeypatch.delenv(var, raising=False)
    return path


class Cli:
    """Runs ``mailcli`` in-process through Typer's CliRunner."""

    def __init__(self, home: Path):
        self.home = home
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None, env: dict[str, str | None] | None = None):
        return self.runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)

    def ok(self, *args: str, **kw):
        """Run and require exit code 0."""
        result = self(*args, **kw)
        assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    def json(self, *args: str, **kw):
        """Run with --json, require success, and parse stdout."""
        return json.loads(self.ok(*args, "--json", **kw).stdout)

    @property
    def db_path(self) -> Path:
        return self.home / "mailcli.db"

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Read the database directly, as an operator with the sqlite3 shell would."""
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(query, params).fetchall()

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every mailcli table, to prove a rejected command wrote nothing."""
        if not self.db_path.exists():
            return {}
        tables = ("users", "mailings", "messages", "mailcli_state")
        return {t: self.sql(f"SELECT * FROM {t} ORDER BY 1") for t in tables}


@pytest.fixture
def cli(home: Path) -> Cli:
    return Cli(home)


def run_mailcli(*args: str, env: dict[str, str] | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m mailcli`` as a separate process (for signals, concurrency, start-up)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mailcli", *args], env=full_env, capture_output=True, text=True, timeout=timeout, **kw
    )


@pytest.fixture
def mailcli_process() -> Callable[..., subprocess.CompletedProcess]:
    return run_mailcli

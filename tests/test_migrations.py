"""Versioned migrations: an empty database migrates to exactly the schema the models describe."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mailcli import migrations
from mailcli.config import load_settings
from mailcli.db import Database, open_database, schema_version
from mailcli.errors import MailcliError
from mailcli.models import metadata


def _open(home: Path) -> Database:
    return open_database(load_settings(env={"MAILCLI_HOME": str(home), "MAILCLI_TZ": "UTC"}))


def test_head_constant_matches_the_newest_migration_script():
    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert script.get_current_head() == migrations.HEAD


def test_migration_ids_are_numbered_and_form_one_line():
    script = ScriptDirectory.from_config(migrations.alembic_config())
    revisions = list(script.walk_revisions())  # newest first
    numbers = [int(r.revision) for r in reversed(revisions)]
    assert numbers == list(range(1, len(numbers) + 1))
    files = sorted(p.name for p in (migrations.SCRIPT_LOCATION / "versions").glob("*.py"))
    assert [f[:4] for f in files] == [f"{n:04d}" for n in numbers]


def test_empty_database_migrates_to_the_models_schema(tmp_path):
    db = _open(tmp_path / "home")
    with db.engine.connect() as conn:
        assert schema_version(conn) == migrations.HEAD
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"migrations and models disagree: {diff}"
        inspector = sa.inspect(conn)
        assert set(inspector.get_table_names()) >= {"users", "mailings", "messages", "mailcli_state"}
        indexes = {ix["name"]: ix for ix in inspector.get_indexes("messages")}
        assert indexes["ix_messages_queue"]["column_names"] == ["mailing_id", "status", "next_attempt_at"]
        uniques = inspector.get_unique_constraints("messages")
        assert any(set(u["column_names"]) == {"user_id", "mailing_id"} for u in uniques)
        user_indexes = {ix["name"]: ix for ix in inspector.get_indexes("users")}
        assert user_indexes["ux_users_phone"]["unique"]
        assert conn.execute(sa.text("SELECT value FROM mailcli_state WHERE key='users_rev'")).scalar() == 0
    db.close()


def test_sqlite_is_opened_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path):
    db = _open(tmp_path / "home")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    db.close()


def test_reopening_an_up_to_date_database_does_not_migrate_again(tmp_path, monkeypatch):
    _open(tmp_path / "home").close()
    monkeypatch.setattr(migrations, "upgrade", lambda conn: pytest.fail("migrated an up-to-date database"))
    _open(tmp_path / "home").close()


def test_several_processes_opening_a_new_database_together_migrate_it_once(tmp_path):
    home = tmp_path / "home"
    errors: list[BaseException] = []

    def open_it():
        try:
            _open(home).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sqlite3.connect(home / "mailcli.db") as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def test_a_database_from_a_newer_mailcli_is_refused(tmp_path):
    _open(tmp_path / "home").close()
    with sqlite3.connect(tmp_path / "home" / "mailcli.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(MailcliError, match="newer than this mailcli"):
        _open(tmp_path / "home")


def test_a_failed_migration_leaves_the_database_unchanged(tmp_path, monkeypatch):
    def broken(conn):
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration failed half-way")

    monkeypatch.setattr(migrations, "upgrade", broken)
    with pytest.raises(RuntimeError):
        _open(tmp_path / "home")
    with sqlite3.connect(tmp_path / "home" / "mailcli.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables


def test_home_and_database_are_private(tmp_path):
    home = tmp_path / "home"
    _open(home).close()
    assert os.stat(home).st_mode & 0o777 == 0o700
    assert os.stat(home / "mailcli.db").st_mode & 0o777 == 0o600


def test_a_database_from_an_older_mailcli_is_upgraded_with_its_data(tmp_path):
    from alembic import command

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    engine = sa.create_engine(f"sqlite:///{home / 'mailcli.db'}")
    stamp = "'2026-12-04 10:00:00.000000'"
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(conn), "0001")
        conn.exec_driver_sql(
            "INSERT INTO users (phone_number, operator_code, tag, tag_key, time_zone, created_at, updated_at) "
            f"VALUES ('79114048095', '911', 'Python-tips', 'python-tips', 'Europe/Moscow', {stamp}, {stamp})"
        )
        conn.exec_driver_sql(
            "INSERT INTO mailings (message, tag, tag_key, operator_code, start_at, end_at, created_at, audience_rev) "
            f"VALUES ('hi', 'python-tips', 'python-tips', '911', {stamp}, {stamp}, {stamp}, 0)"
        )
        conn.exec_driver_sql(
            f"INSERT INTO messages (mailing_id, user_id, status, attempts, next_attempt_at) VALUES (1, 1, 'sent', 1, {stamp})"
        )
    engine.dispose()
    db = _open(home)
    with db.read() as conn:
        assert schema_version(conn) == migrations.HEAD
        assert conn.exec_driver_sql("SELECT phone_number, tag FROM users").all() == [("79114048095", "Python-tips")]
        assert conn.exec_driver_sql("SELECT mailing_id, status, n FROM mailing_counts").all() == [(1, "sent", 1)]
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    db.close()

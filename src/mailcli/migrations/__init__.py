"""Versioned schema migrations (Alembic), applied when a database is opened.

Migrations are numbered (``versions/0001_*.py``, ``0002_*.py``...) and
append-only: a released migration is never edited, a change is a new file.
Alembic records the applied version in the ``alembic_version`` table.
``HEAD`` names the newest revision so that opening an up-to-date database costs
one query and never imports Alembic; ``tests/test_migrations.py`` checks that
it matches the scripts.

To write a new migration: ``alembic -c src/mailcli/migrations/alembic.ini
revision --rev-id 0002 -m "what changes"``.
"""

from __future__ import annotations

from pathlib import Path

HEAD = "0003"
SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection) -> None:
    """Bring the schema to ``HEAD`` inside the caller's transaction."""
    from alembic import command

    command.upgrade(alembic_config(connection), "head")

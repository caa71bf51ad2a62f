"""What every command shares: the resolved settings and the open database."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from mailcli.config import Settings
    from mailcli.db import Database


class AppState:
    """Lazily resolves settings and opens the database the first time a command needs them."""

    def __init__(self, db_option: str | None = None, settings: Settings | None = None):
        self.db_option = db_option
        if settings is not None:
            self.settings = settings  # fills the cached property

    @cached_property
    def settings(self) -> Settings:
        from mailcli.config import load_settings

        return load_settings(db_option=self.db_option)

    @cached_property
    def db(self) -> Database:
        from mailcli.db import open_database

        return open_database(self.settings)

    @property
    def tz(self) -> str:
        """The operator's zone: times are read and shown in it."""
        return self.settings.tz

    def close(self) -> None:
        """Release the database's connections (the command is over)."""
        if "db" in self.__dict__:
            self.__dict__.pop("db").close()

    def now(self) -> datetime:
        from mailcli.validation import utcnow

        return utcnow()


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = AppState()
    return root.obj

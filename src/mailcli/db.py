"""Opening the database: engine, SQLite tuning, transactions, migrations.

SQLite is opened in WAL mode with foreign keys on and a busy timeout, so that
a reader never blocks the delivery engine and overlapping ``mailcli run``
processes queue for the write lock instead of failing. Write transactions
start with ``BEGIN IMMEDIATE``: they take the write lock up front, so a
transaction that reads and then writes can never fail half-way on a lock
upgrade. Read transactions use a plain deferred ``BEGIN``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Connection, Engine, make_url

from mailcli.config import Settings, create_private_file, ensure_home
from mailcli.errors import MailcliError, operational

BUSY_TIMEOUT_MS = 30_000
_WRITE = "mailcli_write"
_MIGRATION_LOCK = 7_305_851_442  # pg_advisory_xact_lock key for schema upgrades


class Database:
    """An engine plus the two kinds of transaction mailcli uses."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine: Engine = self._create_engine()

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True)
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event emit BEGIN
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            immediate = conn.get_execution_options().get(_WRITE)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @property
    def path(self) -> Path | None:
        """The SQLite file, if this is a file database."""
        if self.is_sqlite and self.url.database and self.url.database != ":memory:":
            return Path(self.url.database)
        return None

    @property
    def display(self) -> str:
        """Where the data lives, safe to print (no password)."""
        return str(self.path) if self.path else self.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot; never blocks writers in WAL mode)."""
        with self._guard(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: all of it commits, or none of it."""
        with self._guard(), self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except exc.OperationalError as error:
            raise operational(_describe(error, self.display)) from error
        except exc.DBAPIError as error:
            raise operational(f"database error on {self.display}: {_first_line(error.orig)}") from error

    def close(self) -> None:
        self.engine.dispose()


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _describe(error: exc.OperationalError, where: str) -> str:
    reason = _first_line(error.orig)
    if "locked" in reason or "busy" in reason:
        return f"database {where} is busy: another mailcli process held its lock for over {BUSY_TIMEOUT_MS // 1000} s"
    if "unable to open" in reason:
        return f"cannot open database {where}: {reason}"
    return f"database error on {where}: {reason}"


def open_database(settings: Settings) -> Database:
    """Open (creating if needed) the configured database and bring its schema up to date."""
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        _prepare_sqlite_file(Path(url.database), settings)
    try:
        db = Database(settings.db_url)
    except exc.ArgumentError as error:
        raise operational(f"invalid database URL: {error}") from None
    except ModuleNotFoundError as error:
        raise operational(f"the database driver {error.name!r} is not installed") from None
    try:
        migrate(db)
    except MailcliError:
        db.close()
        raise
    return db


def _prepare_sqlite_file(path: Path, settings: Settings) -> None:
    if path == settings.default_db_path:
        ensure_home(settings.home)
    if path.is_dir():
        raise operational(f"cannot open database {path}: it is a directory")
    if not path.parent.is_dir():
        raise operational(f"cannot open database {path}: directory {path.parent} does not exist")
    try:
        create_private_file(path)
    except OSError as error:
        raise operational(f"cannot open database {path}: {error.strerror}") from None


def schema_version(conn: Connection) -> str | None:
    """The applied migration, or None for a database mailcli has not set up yet."""
    if conn.dialect.name == "sqlite":  # cheaper than the inspector, on every command
        found = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).first()
    else:
        from sqlalchemy import inspect

        found = inspect(conn).has_table("alembic_version")
    if not found:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(db: Database) -> None:
    """Apply pending migrations, once, even when several processes open a new database together."""
    from mailcli import migrations

    with db.read() as conn:
        if schema_version(conn) == migrations.HEAD:
            return
    with db.write() as conn:
        if not db.is_sqlite and db.engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        current = schema_version(conn)
        if current == migrations.HEAD:
            return
        if current is not None and not _known_revision(current):
            raise operational(
                f"database {db.display} has schema version {current}, newer than this mailcli knows; upgrade mailcli"
            )
        migrations.upgrade(conn)


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    from mailcli.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    try:
        return script.get_revision(revision) is not None
    except Exception:
        return False

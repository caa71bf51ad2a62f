"""Bulk import of users from CSV, JSON (array or object) or JSON lines.

The input is streamed (a JSON array is parsed whole) and written in large
batches inside one write transaction, so an import is all or nothing: every
bad row is reported with its line number and nothing is written, unless
``skip_invalid`` asks to import the good rows and report the rest.

Duplicates, inside the file or against users already registered, follow
``on_duplicate``: ``error`` (a bad row), ``skip`` (keep what exists / the first
occurrence) or ``update`` (the last occurrence sets tag and zone).
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcli.audience import bump_users_rev, close_queued, dialect_insert
from mailcli.db import Database
from mailcli.errors import INVALID_INPUT, MailcliError, invalid
from mailcli.models import mailings, messages, users
from mailcli.readers import FORMATS, READERS, detect_format
from mailcli.validation import PHONE_RE, normalize_phone, tag_key, validate_tag, validate_zone

DUPLICATE_POLICIES = ("error", "skip", "update")
BATCH = 20_000
MAX_REPORTED = 1_000

# One validated row: line, phone, operator code, tag, tag key, zone, repeats an earlier line.
Row = tuple[int, str, str, str, str, str, bool]


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reject(self, line: int, error: MailcliError | str) -> None:
        with self._lock:  # the writer thread rejects rows too
            self.invalid += 1
            if len(self.errors) < MAX_REPORTED:
                self.errors.append(f"line {line}: {error}")

    def summary(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "skipped": self.skipped,
            "invalid": self.invalid,
        }


# --- validation ---------------------------------------------------------------


class _Validator:
    """Validates records into rows; tags and zones repeat, so their checks are memoised."""

    def __init__(self, default_tz: str):
        self.default_tz = default_tz
        self.tags: dict[str, tuple[str, str]] = {}
        self.zones: dict[str, str] = {}

    def __call__(self, phone: Any, tag: Any, tz: Any, operator_code: Any) -> tuple[str, str, str, str, str]:
        if not (phone.__class__ is str and PHONE_RE.fullmatch(phone)):
            phone = normalize_phone(phone)
        known_tag = self.tags.get(tag) if tag.__class__ is str else None
        if known_tag is None:
            known_tag = self.tags[tag] = self._tag(tag)
        zone = self.zones.get(tz) if tz.__class__ is str else None
        if zone is None:
            zone = self._zone(tz)
            if tz.__class__ is str:
                self.zones[tz] = zone
        code = phone[1:4]
        if operator_code is not None and operator_code != "" and str(operator_code) != code:
            raise invalid("operator_code", f"{operator_code} does not match the phone number (its code is {code})")
        return phone, code, known_tag[0], known_tag[1], zone

    def _tag(self, raw: Any) -> tuple[str, str]:
        tag = validate_tag(raw)
        return tag, tag_key(tag)

    def _zone(self, raw: Any) -> str:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return self.default_tz
        return validate_zone(raw)


# --- writing ------------------------------------------------------------------


COLUMNS = ("phone_number", "operator_code", "tag", "tag_key", "time_zone", "created_at", "updated_at")


class _Writer:
    """Writes validated rows in batches inside the import's transaction.

    A batch is written on a background thread while the next one is parsed and
    validated (SQLite lets other Python threads run while it works), at most one
    batch at a time; every write still belongs to the import's one transaction.
    The statement is compiled once and executed with plain parameter tuples
    (``Connection.exec_driver_sql``), so no per-row work is spent on parameter
    processing.
    """

    def __init__(self, conn: Connection, report: ImportReport, on_duplicate: str, now: datetime):
        self.conn, self.report, self.on_duplicate = conn, report, on_duplicate
        self.batch: list[Row] = []
        self.check_existing = conn.execute(
            sa.select(users.c.id).where(users.c.removed_at.is_(None)).limit(1)
        ).first() is not None
        # Into an empty SQLite table, rows go in without indexes, which are built once at the
        # end (faster than maintaining them row by row). Repeats inside the file never reach
        # the table in this mode (rejected or skipped), so the unique index builds cleanly; a
        # failed import rolls the whole transaction back, indexes included.
        self.bulk = (
            conn.dialect.name == "sqlite"
            and on_duplicate != "update"
            and conn.execute(sa.select(users.c.id).limit(1)).first() is None
        )
        insert = dialect_insert(conn, users)
        if self.bulk:
            for index in users.indexes:
                index.drop(conn)
        # A phone removed earlier is revived (same row, history kept); a registered one is
        # updated only with --on-duplicate update (the others were filtered out or skipped).
        statement = insert if self.bulk else insert.on_conflict_do_update(
            index_elements=["phone_number"],
            set_={
                "tag": insert.excluded.tag,
                "tag_key": insert.excluded.tag_key,
                "time_zone": insert.excluded.time_zone,
                "updated_at": insert.excluded.updated_at,
                "removed_at": sa.null(),
            },
            where=None if on_duplicate == "update" else users.c.removed_at.is_not(None),
        )
        compiled = statement.compile(dialect=conn.dialect, column_keys=list(COLUMNS))
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        assert not self.positional or tuple(compiled.positiontup or ()) == COLUMNS
        stamp_type = users.c.created_at.type
        processor = stamp_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        self.stamp = processor(now) if processor else now
        self.enabled = True  # False once the import is bound to fail: keep validating, stop writing
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mailcli-import")
        self._pending: Future | None = None

    def add(self, row: Row) -> None:
        self.batch.append(row)
        if len(self.batch) >= BATCH:
            self.submit()

    def submit(self) -> None:
        """Hand the batch to the writer thread (after the previous one is written)."""
        batch, self.batch = self.batch, []
        self.wait()
        if batch:
            self._pending = self._pool.submit(self._write, batch)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a failed write here

    def finish(self) -> None:
        try:
            self.submit()
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
        if self.bulk:
            for index in users.indexes:
                index.create(self.conn)

    def _write(self, batch: list[Row]) -> None:
        existing = self._existing([r[1] for r in batch]) if self.check_existing else set()
        if existing and self.on_duplicate == "error":
            kept = []
            for row in batch:
                if row[1] in existing:
                    self.report.reject(row[0], invalid("phone_number", f"{row[1]} is already registered"))
                else:
                    kept.append(row)
            batch = kept
        if not self.enabled or not batch:
            return
        stamp = self.stamp
        params: list = [(phone, code, tag, key, tz, stamp, stamp) for _, phone, code, tag, key, tz, _ in batch]
        if not self.positional:
            params = [dict(zip(COLUMNS, values, strict=True)) for values in params]
        self.conn.exec_driver_sql(self.sql, params)
        # A row repeating an earlier one of the file (update mode) or a registered phone is not new.
        old = sum(1 for r in batch if r[6] or r[1] in existing)
        if self.on_duplicate == "update":
            self.report.updated += old
        else:
            self.report.skipped += old
        self.report.added += len(batch) - old

    def _existing(self, phones: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(phones), 500):
            chunk = phones[i : i + 500]
            found.update(
                self.conn.execute(
                    sa.select(users.c.phone_number).where(
                        users.c.phone_number.in_(chunk), users.c.removed_at.is_(None)
                    )
                ).scalars()
            )
        return found


def import_users(
    db: Database,
    stream: IO[bytes],
    *,
    name: str | None = None,
    fmt: str | None = None,
    default_tz: str,
    on_duplicate: str = "error",
    skip_invalid: bool = False,
    now: datetime,
) -> ImportReport:
    """Import users from ``stream``; all or nothing unless ``skip_invalid``."""
    if on_duplicate not in DUPLICATE_POLICIES:
        raise invalid("on-duplicate", f"{on_duplicate!r} is not one of {', '.join(DUPLICATE_POLICIES)}")
    if fmt is None:
        buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
        fmt = detect_format(name, buffered.peek(4096)[:4096])
        stream = buffered
    elif fmt not in FORMATS:
        raise invalid("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    report = ImportReport()
    validate = _Validator(default_tz)
    seen: dict[int, int] = {}  # phone -> first line, to find duplicates inside the file
    with db.write() as conn:
        writer = _Writer(conn, report, on_duplicate, now)
        try:
            for record in READERS[fmt](stream):
                report.rows += 1
                if len(record) == 2:
                    report.reject(record[0], record[1])  # type: ignore[arg-type]
                    writer.enabled = skip_invalid
                    continue
                line, phone, tag, tz, code = record  # type: ignore[misc]
                try:
                    row = validate(phone, tag, tz, code)
                except MailcliError as error:
                    report.reject(line, error)
                    writer.enabled = skip_invalid
                    continue
                first = seen.setdefault(int(row[0]), line)
                if first == line:
                    writer.add((line, *row, False))
                elif on_duplicate == "error":
                    report.reject(line, invalid("phone_number", f"{row[0]} already appears on line {first}"))
                    writer.enabled = skip_invalid
                elif on_duplicate == "skip":
                    report.skipped += 1
                else:
                    writer.add((line, *row, True))
        finally:
            writer.finish()
        if report.invalid and not skip_invalid:
            raise MailcliError(
                f"nothing imported: {report.invalid} invalid row{'s' if report.invalid != 1 else ''} "
                f"of {report.rows} (fix them, or import the rest with --skip-invalid)",
                exit_code=INVALID_INPUT,
                details=_shown(report),
            )
        if report.updated:
            _leave_old_audiences(conn, now)
        if report.added or report.updated:
            bump_users_rev(conn)
    return report


def _shown(report: ImportReport) -> list[str]:
    more = report.invalid - len(report.errors)
    return report.errors + ([f"... and {more} more invalid rows"] if more > 0 else [])


def _leave_old_audiences(conn: Connection, now: datetime) -> None:
    """Users whose tag an update changed leave the queues of mailings they no longer match."""
    changed = sa.select(users.c.id).where(users.c.updated_at == now, users.c.removed_at.is_(None))
    mismatch = (
        sa.select(users.c.id)
        .join(mailings, mailings.c.tag_key != users.c.tag_key)
        .where(users.c.id == messages.c.user_id, mailings.c.id == messages.c.mailing_id)
        .exists()
    )
    close_queued(conn, messages.c.user_id.in_(changed), mismatch)

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

import csv
import io
import json
import threading
from collections.abc import Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcli.audience import bump_users_rev, close_queued, dialect_insert
from mailcli.db import Database
from mailcli.errors import INVALID_INPUT, MailcliError, invalid
from mailcli.models import mailings, messages, users
from mailcli.validation import PHONE_RE, normalize_phone, tag_key, validate_tag, validate_zone

FORMATS = ("csv", "json", "jsonl")
DUPLICATE_POLICIES = ("error", "skip", "update")
FIELDS = ("phone_number", "tag", "time_zone")
OPTIONAL_FIELDS = ("operator_code",)  # accepted so that `users list --json` output imports back
BATCH = 20_000
MAX_REPORTED = 1_000
_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}

# One input record before validation: line, phone, tag, zone, operator code (raw values).
Raw = tuple[int, Any, Any, Any, Any]
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


def detect_format(name: str | None, head: bytes) -> str:
    """The input format from the file name, else from its first bytes."""
    if name and name != "-":
        fmt = _EXTENSIONS.get(PurePath(name).suffix.lower())
        if fmt:
            return fmt
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        first_line = text.split(b"\n", 1)[0]
        try:
            json.loads(first_line)
        except ValueError:
            return "json"  # one object spread over several lines
        return "jsonl"
    return "csv"


# --- readers: each yields Raw records or (line, MailcliError) ---------------


def _csv_records(stream: IO[bytes]) -> Iterator[Raw | tuple[int, MailcliError]]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in FIELDS + OPTIONAL_FIELDS]
    if unknown or "phone_number" not in names or "tag" not in names:
        detail = f"unknown column {unknown[0]!r}" if unknown else "phone_number and tag columns are required"
        raise invalid("header", f"{detail} (expected the header phone_number,tag,time_zone)")
    width = len(names)
    i_phone, i_tag = names.index("phone_number"), names.index("tag")
    i_tz = names.index("time_zone") if "time_zone" in names else None
    i_op = names.index("operator_code") if "operator_code" in names else None
    line = reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num
        if len(row) != width:
            if not row or row == [""]:
                continue  # blank line
            yield start, invalid(None, f"expected {width} fields, found {len(row)}")
            continue
        yield (
            start,
            row[i_phone],
            row[i_tag],
            row[i_tz] if i_tz is not None else None,
            row[i_op] if i_op is not None else None,
        )


def _object_record(line: int, obj: object) -> Raw | tuple[int, MailcliError]:
    if not isinstance(obj, Mapping):
        return line, invalid(None, "expected a JSON object with phone_number, tag and time_zone")
    unknown = [k for k in obj if k not in FIELDS + OPTIONAL_FIELDS]
    if unknown:
        return line, invalid(str(unknown[0]), f"unknown field (expected: {', '.join(FIELDS)})")
    return line, obj.get("phone_number"), obj.get("tag"), obj.get("time_zone"), obj.get("operator_code")


def _jsonl_records(stream: IO[bytes]) -> Iterator[Raw | tuple[int, MailcliError]]:
    for line, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            yield line, invalid(None, f"not valid JSON ({exc.msg})")
            continue
        if isinstance(obj, Mapping) and isinstance(obj.get("users"), list) and len(obj) == 1:
            for item in obj["users"]:
                yield _object_record(line, item)
        else:
            yield _object_record(line, obj)


def _json_records(stream: IO[bytes]) -> Iterator[Raw | tuple[int, MailcliError]]:
    """A JSON array of users, one user object, or ``{"users": [...]}``, with line numbers."""
    text = stream.read().decode("utf-8-sig")
    lines = _LineIndex(text)
    pos = _skip_ws(text, 0)
    if text.startswith("{", pos):
        array = _users_array_at(text, pos)
        if array is None:  # a single user
            try:
                obj, end = json.JSONDecoder().raw_decode(text, pos)
            except ValueError as exc:
                raise invalid("input", f"not valid JSON: {exc}") from None
            _expect_end(text, end, lines)
            yield _object_record(lines.line_of(pos), obj)
            return
        end = _skip_ws(text, (yield from _array_records(text, array, lines)))
        if not text.startswith("}", end):
            raise invalid("input", f'line {lines.line_of(end)}: expected the end of {{"users": [...]}}')
        _expect_end(text, end + 1, lines)
        return
    if not text.startswith("[", pos):
        raise invalid("input", "expected a JSON array or object of users")
    _expect_end(text, (yield from _array_records(text, pos, lines)), lines)


def _users_array_at(text: str, pos: int) -> int | None:
    """Where the array of ``{"users": [...]}`` starts, if the object at ``pos`` is one."""
    pos = _skip_ws(text, pos + 1)
    if not text.startswith('"users"', pos):
        return None
    pos = _skip_ws(text, pos + len('"users"'))
    if not text.startswith(":", pos):
        return None
    pos = _skip_ws(text, pos + 1)
    return pos if text.startswith("[", pos) else None


def _array_records(text: str, pos: int, lines: _LineIndex) -> Generator[Raw | tuple[int, MailcliError], None, int]:
    """The items of the JSON array starting at ``pos``; returns the position after it."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, pos + 1)
    if text.startswith("]", pos):
        return pos + 1
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError as exc:
            raise invalid("input", f"line {lines.line_of(pos)}: not valid JSON ({exc.msg})") from None
        yield _object_record(lines.line_of(pos), obj)
        pos = _skip_ws(text, end)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif text.startswith("]", pos):
            return pos + 1
        else:
            raise invalid("input", f"line {lines.line_of(pos)}: expected ',' or ']' in the JSON array")


class _LineIndex:
    """Line numbers of offsets in a text, computed incrementally (offsets only grow)."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def line_of(self, offset: int) -> int:
        if offset < self.pos:
            return self.text.count("\n", 0, offset) + 1
        self.line += self.text.count("\n", self.pos, offset)
        self.pos = offset
        return self.line


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _expect_end(text: str, pos: int, lines: _LineIndex) -> None:
    pos = _skip_ws(text, pos)
    if pos != len(text):
        raise invalid(
            "input", f"line {lines.line_of(pos)}: unexpected data after the JSON value (JSON lines? use --format jsonl)"
        )


READERS = {"csv": _csv_records, "json": _json_records, "jsonl": _jsonl_records}


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

"""Reading users from files: CSV, a JSON array or object, JSON lines, with line numbers.

Each reader yields one record per user, ``(line, phone, tag, time_zone,
operator_code)`` with the values as found, or ``(line, MailcliError)`` for a
record that cannot be read; validation is the importer's business. CSV and
JSON lines are streamed; a JSON array is parsed whole, item by item with
``json.JSONDecoder.raw_decode`` so that every item keeps its line number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator, Iterator, Mapping
from pathlib import PurePath
from typing import IO, Any

from mailcli.errors import MailcliError, invalid

FORMATS = ("csv", "json", "jsonl")
FIELDS = ("phone_number", "tag", "time_zone")
OPTIONAL_FIELDS = ("operator_code",)  # accepted so that `users list --json` output imports back
_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}

# One input record before validation: line, phone, tag, zone, operator code (raw values).
Raw = tuple[int, Any, Any, Any, Any]


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

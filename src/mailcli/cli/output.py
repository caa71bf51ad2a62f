"""Everything the CLI prints: data on stdout, chatter on stderr.

One helper serves every command that shows data: a Rich table by default,
the SPEC's JSON with ``--json``. Lists are streamed as JSON (one object per
line inside the array) so a million rows never sit in memory. Rich is only
imported when a table is actually printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple


class Column(NamedTuple):
    """A table column: its header, how to get the cell from a shape, and whether it may wrap."""

    header: str
    get: Callable[[dict[str, Any]], Any]
    wrap: bool = False


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=indent)


def print_json(obj: Any) -> None:
    sys.stdout.write(to_json(obj) + "\n")


def stream_json(items: Iterable[Any]) -> int:
    """Write a JSON array item by item; return how many were written."""
    write = sys.stdout.write
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    count = 0
    write("[")
    for item in items:
        write(",\n" if count else "\n")
        write(dumps(item))
        count += 1
    write("\n]\n" if count else "]\n")
    return count


PIPE_WIDTH = 200  # a table written to a pipe or a file is not squeezed into 80 columns


def stdout_console():
    import os

    from rich.console import Console

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(soft_wrap=False, width=width)


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[Column], *, title: str | None = None) -> int:
    """Print shapes as a Rich table; return how many rows were printed."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column.header, overflow="fold", no_wrap=not column.wrap, min_width=8 if column.wrap else None)
    count = 0
    for row in rows:
        table.add_row(*(_cell(column.get(row)) for column in columns))
        count += 1
    stdout_console().print(table)
    return count


def print_record(item: dict[str, Any], columns: Sequence[Column], *, title: str | None = None) -> None:
    """One shape as a two-column table: a line per field."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for column in columns:
        table.add_row(column.header, _cell(column.get(item)))
    stdout_console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return str(value)


def emit(
    items: Iterable[dict[str, Any]] | dict[str, Any],
    columns: Sequence[Column],
    *,
    as_json: bool,
    title: str | None = None,
) -> int:
    """The one output path of data commands: a shape or a list of shapes, as JSON or a table."""
    if isinstance(items, dict):
        if as_json:
            print_json(items)
        else:
            print_record(items, columns, title=title)
        return 1
    if as_json:
        return stream_json(items)
    return print_table(items, columns, title=title)


def info(message: str) -> None:
    """A line of chatter for the operator (stderr, so stdout stays data)."""
    sys.stderr.write(message + "\n")


def error_line(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")


def paging_note(shown: int, offset: int, total: int, noun: str) -> None:
    """On stderr, when a table shows only part of a list: how to see the rest."""
    if shown < total:
        first = offset + 1 if shown else offset
        info(f"showing {first}-{offset + shown} of {total} {noun}; page with --limit/--offset, or use --json for all")

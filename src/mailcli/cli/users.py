"""``mailcli users``: register, list, change, remove and import recipients."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from mailcli.cli.output import Column, emit, info, paging_note, print_json
from mailcli.cli.state import state

app = typer.Typer(
    help=(
        "Register recipients: phone (7XXXXXXXXXX), tag and IANA time zone.\n\n"
        "Example: mailcli users add 79114048095 --tag python-tips --tz Europe/Moscow"
    ),
    no_args_is_help=True,
)

USER_COLUMNS: list[Column] = [
    Column("phone_number", lambda u: u["phone_number"]),
    Column("operator_code", lambda u: u["operator_code"]),
    Column("tag", lambda u: u["tag"], wrap=True),
    Column("time_zone", lambda u: u["time_zone"], wrap=True),
]
TABLE_LIMIT = 100

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (the SPEC's user objects) instead of a table.")]
Phone = Annotated[str, typer.Argument(help="Phone number: 11 digits starting with 7, e.g. 79114048095.")]


@app.command(epilog="Example: mailcli users add 79114048095 --tag python-tips --tz Europe/Moscow")
def add(
    ctx: typer.Context,
    phone: Phone,
    tag: Annotated[str, typer.Option("--tag", "-t", help="Free-text tag; mailings match it ignoring case.")],
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="IANA time zone, e.g. Europe/Moscow (default: the operator's zone, MAILCLI_TZ)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Add one user."""
    from mailcli.users import add_user

    app_state = state(ctx)
    user = add_user(app_state.db, phone, tag, app_state.tz if tz is None else tz, now=app_state.now())
    emit(user, USER_COLUMNS, as_json=as_json)


@app.command("list", epilog="Example: mailcli users list --tag python-tips --operator-code 911 --json")
def list_(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only users with this tag (case ignored).")] = None,
    operator_code: Annotated[
        str | None, typer.Option("--operator-code", "-o", help="Only users of this 3-digit operator code.")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=0, help=f"At most this many users (default: {TABLE_LIMIT} in a table, all with --json)"),
    ] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many users first.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List users, in the order they were added."""
    from mailcli.users import count_users, iter_users

    db = state(ctx).db
    if as_json:
        emit(iter_users(db, tag=tag, operator_code=operator_code, limit=limit, offset=offset), USER_COLUMNS, as_json=True)
        return
    rows = iter_users(db, tag=tag, operator_code=operator_code, limit=TABLE_LIMIT if limit is None else limit, offset=offset)
    shown = emit(rows, USER_COLUMNS, as_json=False)
    if limit is None:
        paging_note(shown, offset, count_users(db, tag=tag, operator_code=operator_code), "users")


@app.command(epilog="Example: mailcli users update 79114048095 --tag java-tips")
def update(
    ctx: typer.Context,
    phone: Phone,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="The new tag.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="The new IANA time zone.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a user's tag and/or time zone."""
    from mailcli.users import update_user

    app_state = state(ctx)
    user = update_user(app_state.db, phone, tag=tag, time_zone=tz, now=app_state.now())
    emit(user, USER_COLUMNS, as_json=as_json)


@app.command(epilog="Example: mailcli users remove 79114048095")
def remove(ctx: typer.Context, phone: Phone, as_json: JsonOption = False) -> None:
    """Remove a user: nothing more is sent to them; what was sent stays in the mailings' history."""
    from mailcli.users import remove_user

    app_state = state(ctx)
    user = remove_user(app_state.db, phone, now=app_state.now())
    if as_json:
        print_json(user)
    else:
        info(f"removed {user['phone_number']}")


@app.command("import", epilog="Example: mailcli users import customers.csv --on-duplicate skip")
def import_(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            help="CSV with the header phone_number,tag,time_zone; a JSON array or object; or JSON lines. '-' reads stdin."
        ),
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="csv, json or jsonl (default: from the name or the content)")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the valid rows and report the invalid ones.")
    ] = False,
    on_duplicate: Annotated[
        str,
        typer.Option(help="A phone already registered or repeated in the file: error, skip or update."),
    ] = "error",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Add many users at once: all or nothing, every invalid row reported with its line number.

    A row without a time zone gets the operator's zone.
    """
    from mailcli.errors import operational
    from mailcli.importer import import_users

    app_state = state(ctx)
    db = app_state.db
    try:
        stream = nullcontext(sys.stdin.buffer) if file == "-" else open(Path(file), "rb")  # noqa: SIM115
    except OSError as exc:
        raise operational(f"cannot read {file}: {exc.strerror}") from None
    with stream as source:
        report = import_users(
            db,
            source,
            name=file,
            fmt=fmt,
            default_tz=app_state.tz,
            on_duplicate=on_duplicate,
            skip_invalid=skip_invalid,
            now=app_state.now(),
        )
    for line in report.errors:
        info(f"skipped {line}")
    if as_json:
        print_json(report.summary())
    else:
        sys.stdout.write(
            f"{report.rows} rows: {report.added} users added, {report.updated} updated, "
            f"{report.skipped} duplicates skipped, {report.invalid} invalid rows skipped\n"
        )

"""``mailcli mailings``: schedule mailings and read their statistics."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mailcli.cli.output import Column, emit, info, paging_note
from mailcli.cli.state import state

app = typer.Typer(
    help=(
        "Schedule mailings to the users matching a tag and an operator code, inside a start/end window.\n\n"
        'Example: mailcli mailings create -m "New cool python tip" --tag python-tips '
        "--operator-code 911 --start now --end +1h"
    ),
    no_args_is_help=True,
)

MAILING_COLUMNS: list[Column] = [
    Column("id", lambda m: m["id"]),
    Column("state", lambda m: m["state"]),
    Column("message", lambda m: _short(m["message"]), wrap=True),
    Column("filter", lambda m: f"{m['filter']['tag']} · {m['filter']['operator_code']}", wrap=True),
    Column("start_at", lambda m: m["start_at"], wrap=True),
    Column("end_at", lambda m: m["end_at"], wrap=True),
    Column("window", lambda m: m["window"]),
    Column("messages", lambda m: _counts(m["message_count"]), wrap=True),
]
MESSAGE_COLUMNS: list[Column] = [
    Column("id", lambda m: m["id"]),
    Column("status", lambda m: m["status"]),
    Column("sent_at", lambda m: m["sent_at"], wrap=True),
    Column("phone", lambda m: m["client"]["phone_number"]),
    Column("tag", lambda m: m["client"]["tag"], wrap=True),
    Column("zone", lambda m: m["client"]["time_zone"], wrap=True),
    Column("tries", lambda m: m["attempts"]),
    Column("error", lambda m: m["last_error"], wrap=True),
]
TABLE_LIMIT = 100

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (the SPEC's shapes) instead of a table.")]
MailingId = Annotated[int, typer.Argument(help="The mailing's id (see `mailcli mailings list`).", min=1)]


def _counts(counts: dict[str, int]) -> str:
    return f"{counts['sent']} sent · {counts['failed']} failed · {counts['not_sent']} not sent"


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command(
    epilog=(
        'Examples: mailcli mailings create -m "Hello" --tag python-tips --operator-code 911 '
        '--start "20.12.2026 16:10" --end "20.12.2026 16:20"  |  '
        "mailcli mailings create --input mailing.json"
    )
)
def create(
    ctx: typer.Context,
    message: Annotated[str | None, typer.Option("--message", "-m", help="The text to send.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Send to users with this tag (case ignored).")] = None,
    operator_code: Annotated[
        str | None, typer.Option("--operator-code", "-o", help="Send to users of this 3-digit operator code.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="When sending may start: 'dd.mm.yyyy hh:mm[:ss]' in your zone, 'now' or '+N{s,m,h,d}'."),
    ] = None,
    end: Annotated[str | None, typer.Option(help="When sending must stop, in the same forms as --start.")] = None,
    window: Annotated[
        str | None,
        typer.Option(help="Only send between HH:MM-HH:MM in each user's own zone (may cross midnight)."),
    ] = None,
    input_file: Annotated[
        str | None,
        typer.Option("--input", "-i", help="Read the JSON body {filter, message, start_at, end_at} from FILE ('-' = stdin)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Schedule a mailing. Times are in the operator's zone (MAILCLI_TZ)."""
    from mailcli.errors import invalid, operational
    from mailcli.mailings import create_from_body, create_mailing

    app_state = state(ctx)
    if input_file is not None:
        given = [name for name, value in (("--message", message), ("--tag", tag), ("--operator-code", operator_code),
                                          ("--start", start), ("--end", end)) if value is not None]
        if given:
            raise invalid("input", f"--input carries the whole mailing; drop {', '.join(given)}")
        try:
            raw = sys.stdin.buffer.read() if input_file == "-" else Path(input_file).read_bytes()
            text = raw.decode("utf-8-sig")
        except OSError as exc:
            raise operational(f"cannot read {input_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise invalid("input", "is not UTF-8 text") from None
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise invalid("input", f"not valid JSON: {exc}") from None
        if window is not None and isinstance(body, dict):
            body.setdefault("window", window)
        mailing = create_from_body(app_state.db, body, tz=app_state.tz, now=app_state.now())
    else:
        for name, value in (("--message", message), ("--tag", tag), ("--operator-code", operator_code),
                            ("--start", start), ("--end", end)):
            if value is None:
                raise invalid(name.lstrip("-").replace("-", "_"), f"is required ({name}), or give the whole mailing with --input")
        mailing = create_mailing(
            app_state.db,
            message=message,  # type: ignore[arg-type]
            tag=tag,  # type: ignore[arg-type]
            operator_code=operator_code,  # type: ignore[arg-type]
            start=start,  # type: ignore[arg-type]
            end=end,  # type: ignore[arg-type]
            window=window,
            tz=app_state.tz,
            now=app_state.now(),
        )
    emit(mailing, MAILING_COLUMNS, as_json=as_json)


@app.command("list", epilog="Example: mailcli mailings list --json")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """All mailings with their message counts by status."""
    from mailcli.mailings import list_mailings

    app_state = state(ctx)
    emit(list_mailings(app_state.db, tz=app_state.tz, now=app_state.now()), MAILING_COLUMNS, as_json=as_json)


@app.command(epilog="Example: mailcli mailings show 1")
def show(ctx: typer.Context, mailing_id: MailingId, as_json: JsonOption = False) -> None:
    """One mailing, with its counts and the size of its audience now."""
    from mailcli.mailings import get_mailing

    app_state = state(ctx)
    mailing = get_mailing(app_state.db, mailing_id, tz=app_state.tz, now=app_state.now())
    emit(mailing, [*MAILING_COLUMNS, Column("audience", lambda m: m["audience"])], as_json=as_json)


@app.command(epilog="Example: mailcli mailings stats 1 --status failed --json")
def stats(
    ctx: typer.Context,
    mailing_id: MailingId,
    status: Annotated[str | None, typer.Option(help="Only messages in this status: not_sent, sent or failed.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=0, help=f"At most this many messages (default: {TABLE_LIMIT} in a table, all with --json)"),
    ] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many messages first.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """A mailing's messages: status, time sent, and the client each is for."""
    from mailcli.mailings import count_messages, iter_stats

    app_state = state(ctx)
    db, tz, now = app_state.db, app_state.tz, app_state.now()
    if as_json:
        emit(iter_stats(db, mailing_id, tz=tz, now=now, status=status, limit=limit, offset=offset), MESSAGE_COLUMNS,
             as_json=True)
        return
    rows = iter_stats(db, mailing_id, tz=tz, now=now, status=status, limit=TABLE_LIMIT if limit is None else limit,
                      offset=offset)
    shown = emit(rows, MESSAGE_COLUMNS, as_json=False, title=f"mailing {mailing_id}")
    if limit is None:
        paging_note(shown, offset, count_messages(db, mailing_id, now=now, status=status), "messages")


@app.command(epilog="Example: mailcli mailings cancel 1")
def cancel(ctx: typer.Context, mailing_id: MailingId, as_json: JsonOption = False) -> None:
    """Stop a mailing: nothing more is sent; what was sent stays sent."""
    from mailcli.mailings import cancel_mailing

    app_state = state(ctx)
    mailing, changed = cancel_mailing(app_state.db, mailing_id, tz=app_state.tz, now=app_state.now())
    if not changed:
        info(f"mailing {mailing_id} was already cancelled")
    emit(mailing, MAILING_COLUMNS, as_json=as_json)

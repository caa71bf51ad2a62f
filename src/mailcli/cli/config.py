"""``mailcli config``: the resolved settings and the config file."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mailcli.cli.output import Column, emit, info
from mailcli.cli.state import state

app = typer.Typer(
    help=(
        "Show the resolved settings and write $MAILCLI_HOME/config.toml (read by cron runs too).\n\n"
        "Example: mailcli config set gateway_url https://probe.fbrq.cloud/v1"
    ),
    no_args_is_help=True,
)

SETTING_COLUMNS: list[Column] = [
    Column("setting", lambda s: s["key"]),
    Column("value", lambda s: s["value"], wrap=True),
    Column("from", lambda s: s["source"], wrap=True),
]
Key = Annotated[str, typer.Argument(help="One of: db, tz, gateway_url, gateway_token.")]


@app.command(epilog="Example: mailcli config show --json")
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every setting, its value (the token masked) and where it comes from.

    Precedence: option > environment variable > config file > default.
    """
    settings = state(ctx).settings
    rows = settings.describe()
    if as_json:
        emit({row["key"]: {"value": row["value"], "source": row["source"]} for row in rows}, [], as_json=True)
    else:
        emit(rows, SETTING_COLUMNS, as_json=False, title=f"config file: {settings.config_path}")


@app.command("set", epilog="Example: mailcli config set gateway_token 'eyJhbGciOi...'")
def set_(
    ctx: typer.Context,
    key: Key,
    value: Annotated[str, typer.Argument(help="The value; checked before it is written.")],
) -> None:
    """Write one setting to the config file (created owner-only, 0600)."""
    from mailcli.config import SECRET_KEYS, mask_secret, user_dir, write_config_value

    path = write_config_value(user_dir(), key, value)
    shown = mask_secret(value) if key in SECRET_KEYS else value
    info(f"{key} = {shown} written to {path}")


@app.command(epilog="Example: mailcli config unset gateway_token")
def unset(ctx: typer.Context, key: Key) -> None:
    """Remove one setting from the config file."""
    from mailcli.config import user_dir, write_config_value

    path = write_config_value(user_dir(), key, None)
    info(f"{key} removed from {path}")


@app.command(epilog="Example: mailcli config path")
def path(ctx: typer.Context) -> None:
    """Print where the config file is."""
    sys.stdout.write(f"{state(ctx).settings.config_path}\n")

"""The root ``mailcli`` command: global options and the one error boundary.

Command modules are imported here, but each keeps its heavy imports
(SQLAlchemy, aiohttp, Rich) inside the command functions, so that
``mailcli --help`` starts fast.

Exit codes: 0 success, 1 operational failure (database, gateway, files),
2 invalid input (nothing was written), 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from mailcli import __version__
from mailcli.cli import config as config_cli
from mailcli.cli import demo as demo_cli
from mailcli.cli import gateway as gateway_cli
from mailcli.cli import mailings as mailings_cli
from mailcli.cli import run as run_cli
from mailcli.cli import users as users_cli
from mailcli.cli.output import error_line, info
from mailcli.cli.state import AppState
from mailcli.errors import INVALID_INPUT, MailcliError

# Click's UsageError, found without importing click (Typer may vendor it).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
INTERRUPTED = 130


def debug_enabled() -> bool:
    return os.environ.get("MAILCLI_DEBUG", "").strip() not in ("", "0", "false", "no")


class MailcliGroup(TyperGroup):
    """Turns every failure into one line on stderr and an exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MailcliError as exc:
            if debug_enabled():
                raise
            for line in exc.details:
                info(line)
            error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:
            if debug_enabled():
                raise
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            error_line(f"{exc.format_message()}{where}")
            raise typer.Exit(INVALID_INPUT) from None
        except KeyboardInterrupt:
            error_line("interrupted")
            raise typer.Exit(INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # the last resort: never a traceback unless asked for
            if debug_enabled():
                raise
            error_line(f"unexpected {type(exc).__name__}: {exc} (set MAILCLI_DEBUG=1 for a traceback)")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=MailcliGroup,
    name="mailcli",
    help=(
        "Schedule SMS-style mailings to a filtered audience and deliver them through an HTTP gateway.\n\n"
        "Example: mailcli users add 79114048095 --tag python-tips --tz Europe/Moscow"
    ),
    epilog=(
        "Quick start: mailcli demo    |    Exit codes: 0 ok, 1 operational failure, "
        "2 invalid input, 130 interrupted. MAILCLI_DEBUG=1 shows tracebacks."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"mailcli {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database: a file path or an SQLAlchemy URL (env: MAILCLI_DB; default: $MAILCLI_HOME/mailcli.db)",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    ctx.obj = AppState(db_option=db or None)
    ctx.call_on_close(ctx.obj.close)


app.add_typer(users_cli.app, name="users")
app.add_typer(mailings_cli.app, name="mailings")
app.add_typer(config_cli.app, name="config")
app.add_typer(gateway_cli.app, name="gateway")
run_cli.register(app)
app.command("demo", epilog="Example: mailcli demo --users 1000 --failure-rate 0.3")(demo_cli.demo)


def main() -> None:
    app(prog_name="mailcli")

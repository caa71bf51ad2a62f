"""``mailcli run``: deliver what is due, now or in a loop."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailcli.cli.output import info, print_json
from mailcli.cli.state import state

if TYPE_CHECKING:
    from mailcli.cli.state import AppState
    from mailcli.delivery.engine import RunOptions

INTERRUPTED, TERMINATED = 130, 143
DEFAULT_CLAIM_TIMEOUT = 120.0
EXIT_CODES = {None: 0, "interrupted": INTERRUPTED, "terminated": TERMINATED}

RUN_HELP = """Deliver the messages that are due now through the gateway, retrying transient failures.

Without --loop it returns when everything due is delivered (or, with the gateway down, after about a minute, leaving the rest for the next run): run it from cron every minute. With --loop it keeps polling for new mailings until SIGINT/SIGTERM, which stop it within a few seconds with every outcome recorded.

Exit codes: 0 done, 1 gateway down or misconfigured, 2 invalid settings, 130 interrupted (SIGINT), 143 terminated (SIGTERM)."""


def run(
    ctx: typer.Context,
    loop: Annotated[bool, typer.Option("--loop", help="Keep running and pick up new mailings until stopped.")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls with --loop.")] = 5.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=1000, help="Requests in flight at once.")
    ] = 100,
    rate: Annotated[
        float | None, typer.Option(min=0.01, help="At most this many messages per second (default: no limit).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent now; send and change nothing.")
    ] = False,
    log: Annotated[
        Path | None, typer.Option("--log", help="Append one JSON line per attempt to this file.", dir_okay=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary (or the dry run) as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing unless something goes wrong.")] = False,
    claim_timeout: Annotated[
        float | None,
        typer.Option(
            min=15,
            help="Seconds a claim lasts: a crashed run's messages are taken over after it "
            "(default: 120, or 2 × --timeout + 5 if longer).",
        ),
    ] = None,
    give_up_after: Annotated[
        float, typer.Option(min=1, help="Seconds without a successful send before a run gives up.")
    ] = 60.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds one request to the gateway may take.")] = 10.0,
) -> None:
    from mailcli.delivery.engine import RunOptions

    app_state = state(ctx)
    settings = app_state.settings
    if dry_run:
        return dry_run_report(app_state, as_json)
    if not settings.gateway_url:
        from mailcli.errors import invalid

        raise invalid(
            "gateway_url",
            "is not set: mailcli config set gateway_url URL (or MAILCLI_GATEWAY_URL); try `mailcli gateway serve`",
        )
    shortest_claim = 2 * timeout + 5  # a claimed message may wait for one request, then take one
    if claim_timeout is None:
        claim_timeout = max(DEFAULT_CLAIM_TIMEOUT, shortest_claim)
    elif claim_timeout < shortest_claim:
        from mailcli.errors import invalid

        raise invalid(
            "claim-timeout",
            f"{claim_timeout:g} s is too short for requests of up to {timeout:g} s (--timeout): "
            f"give at least {shortest_claim:g} s",
        )
    options = RunOptions(
        concurrency=concurrency,
        rate=rate,
        loop=loop,
        interval=interval,
        lease=claim_timeout,
        give_up_after=give_up_after,
        request_timeout=timeout,
    )
    code = deliver(app_state, settings.gateway_url, settings.gateway_token, options, as_json=as_json, quiet=quiet, log=log)
    raise typer.Exit(code)


def deliver(
    app_state: AppState,
    gateway_url: str,
    token: str | None,
    options: RunOptions,
    *,
    as_json: bool = False,
    quiet: bool = False,
    log: Path | None = None,
) -> int:
    """Run the engine with a progress bar on a terminal; print the summary; return the exit code."""
    import asyncio

    from mailcli.cli.progress import ProgressObserver, WorkerLog, print_summary, stderr_is_terminal
    from mailcli.delivery.engine import DeliveryEngine
    from mailcli.delivery.log import AttemptLog
    from mailcli.delivery.report import Observers
    from mailcli.errors import operational

    db = app_state.db
    attempt_log = AttemptLog(log) if log else None
    interactive = stderr_is_terminal() and not quiet
    progress = ProgressObserver() if interactive else None
    worker_log = WorkerLog() if options.loop and not interactive and not quiet else None
    engine = DeliveryEngine(
        db,
        gateway_url=gateway_url,
        token=token,
        options=options,
        clock=app_state.now,
        observer=Observers(progress, worker_log, attempt_log),
    )
    try:
        if progress:
            with progress:
                report = asyncio.run(engine.run())
        else:
            report = asyncio.run(engine.run())
    finally:
        if worker_log:
            worker_log.flush()
        if attempt_log:
            attempt_log.close()
    if as_json:
        print_json(report.as_dict())
    elif not quiet and (report.mailings or interactive):
        if report.mailings:
            print_summary(report)
        else:
            info("nothing is due")
    if report.stopped in ("gave_up", "misconfigured", "error"):
        raise operational(report.error or report.stopped)
    if report.stopped and not quiet:
        info(f"stopped ({report.stopped}): every outcome is recorded and unsent messages are released")
    return EXIT_CODES.get(report.stopped, 1)


def dry_run_report(app_state: AppState, as_json: bool) -> None:
    from mailcli.delivery.plan import plan

    settings = app_state.settings
    mailings = plan(
        app_state.db, gateway_url=settings.gateway_url, token=settings.gateway_token, tz=app_state.tz, now=app_state.now()
    )
    if as_json:
        print_json({"gateway_url": settings.gateway_url, "mailings": mailings})
        return
    from rich.table import Table

    from mailcli.cli.output import stdout_console, to_json

    if not mailings:
        info("dry run: nothing is due")
        return
    table = Table(title=f"dry run: nothing sent, nothing changed (gateway {settings.gateway_url or 'not set'})",
                  title_justify="left", header_style="bold")
    for header in ("mailing", "audience", "would send", "window", "ends", "first request"):
        table.add_column(header, overflow="fold", no_wrap=header in ("mailing", "audience", "would send"))
    for m in mailings:
        first = m["sample"][0] if m["sample"] else None
        request = f"POST {first['url']}\n{to_json(first['body'], indent=None)}" if first else "-"
        table.add_row(str(m["mailing_id"]), str(m["audience"]), str(m["would_send"]), m["window"] or "-", m["end_at"],
                      request)
    stdout_console().print(table)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help=RUN_HELP,
        epilog="Examples: mailcli run  |  mailcli run --loop --concurrency 200 --log attempts.jsonl  |  "
        "* * * * * mailcli run -q  (crontab)",
    )(run)

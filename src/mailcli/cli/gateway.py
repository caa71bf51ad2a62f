"""``mailcli gateway serve``: the local gateway simulator, for trying a setup."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailcli.cli.output import info

app = typer.Typer(
    help="A local HTTP gateway with the real gateway's contract, for trying a setup without sending anything.",
    no_args_is_help=True,
)


@app.command(
    epilog=(
        "Example: mailcli gateway serve --port 8080 --latency 0.05 --failure-rate 0.2 --token secret, then "
        "MAILCLI_GATEWAY_URL=http://127.0.0.1:8080/v1 MAILCLI_GATEWAY_TOKEN=secret mailcli run"
    )
)
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8080,
    latency: Annotated[float, typer.Option(min=0, help="Seconds before every answer.")] = 0.0,
    jitter: Annotated[float, typer.Option(min=0, help="Extra random seconds (0..jitter) before every answer.")] = 0.0,
    failure_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests answered with --failure-status.")
    ] = 0.0,
    failure_status: Annotated[int, typer.Option(min=400, max=599, help="Status of the failures.")] = 500,
    retry_after: Annotated[
        float | None, typer.Option(min=0, help="Retry-After seconds sent with the failures.")
    ] = None,
    malformed_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests answered 200 with a body that is not JSON.")
    ] = 0.0,
    token: Annotated[
        str | None, typer.Option(help="Require 'Authorization: Bearer TOKEN' (401 otherwise).", envvar=None)
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible failures.")] = None,
    record: Annotated[
        Path | None, typer.Option(help="Append one JSON line per accepted message to this file.", dir_okay=False)
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print a line per request.")] = False,
) -> None:
    """Serve POST /v1/send/{msgId} on 127.0.0.1 until Ctrl-C, printing what it receives."""
    from mailcli.errors import invalid, operational
    from mailcli.simulator import SimulatorConfig
    from mailcli.simulator import serve as serve_forever

    try:
        config = SimulatorConfig(
            host=host,
            port=port,
            latency=latency,
            jitter=jitter,
            failure_rate=failure_rate,
            failure_status=failure_status,
            retry_after=retry_after,
            malformed_rate=malformed_rate,
            token=token,
            seed=seed,
            record_path=record,
            quiet=quiet,
        )
    except ValueError as exc:
        raise invalid(None, str(exc)) from None

    def ready(url: str) -> None:
        info(f"gateway simulator listening on {url}")
        info(f"try it: MAILCLI_GATEWAY_URL={url}{' MAILCLI_GATEWAY_TOKEN=...' if token else ''} mailcli run")
        sys.stderr.flush()

    try:
        stats = serve_forever(config, on_ready=ready)
    except OSError as exc:
        raise operational(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    info("stopped: " + ", ".join(f"{key} {value}" for key, value in stats.items()))

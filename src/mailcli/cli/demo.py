"""``mailcli demo``: the whole flow in a throw-away home against the built-in gateway simulator."""

from __future__ import annotations

import io
import random
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from mailcli.cli.output import info

OPERATOR_CODES = ("911", "911", "911", "921", "953")
TAGS = ("python-tips", "Python-Tips", "PYTHON-TIPS", "python-tips", "java-tips")
ZONES = ("Europe/Moscow", "Europe/Kaliningrad", "Asia/Yekaterinburg", "Asia/Novosibirsk", "Asia/Vladivostok")
MESSAGE = "New cool python tip: use enumerate() instead of range(len(...))"


def sample_users_csv(count: int, seed: int = 7) -> bytes:
    """A CSV of ``count`` made-up users, most of them in the demo mailing's audience."""
    rng = random.Random(seed)
    lines = ["phone_number,tag,time_zone"]
    numbers = rng.sample(range(10_000_000), count)
    for number in numbers:
        lines.append(f"7{rng.choice(OPERATOR_CODES)}{number:07d},{rng.choice(TAGS)},{rng.choice(ZONES)}")
    return ("\n".join(lines) + "\n").encode()


def demo(
    home: Annotated[
        Path | None,
        typer.Option(help="Use (and keep) this home instead of a throw-away one.", file_okay=False),
    ] = None,
    users: Annotated[int, typer.Option(min=1, max=100_000, help="How many sample users to import.")] = 300,
    failure_rate: Annotated[
        float, typer.Option(min=0, max=0.9, help="Share of gateway requests that fail (and are retried).")
    ] = 0.1,
) -> None:
    """Import sample users, schedule a mailing starting now, deliver it through a local simulated gateway (which fails now and then), and show the statistics. Nothing leaves this machine."""  # noqa: E501
    from mailcli.cli.mailings import MAILING_COLUMNS, MESSAGE_COLUMNS
    from mailcli.cli.output import emit
    from mailcli.cli.run import deliver
    from mailcli.cli.state import AppState
    from mailcli.config import load_settings
    from mailcli.delivery.engine import RunOptions
    from mailcli.importer import import_users
    from mailcli.mailings import create_mailing, iter_stats, list_mailings
    from mailcli.simulator import SimulatorConfig, SimulatorThread

    throwaway = home is None
    demo_home = Path(tempfile.mkdtemp(prefix="mailcli-demo-")) if throwaway else home.absolute()
    app_state = AppState(settings=load_settings(env={"MAILCLI_HOME": str(demo_home), "MAILCLI_TZ": "Europe/Moscow"}))
    try:
        info(f"demo home: {demo_home}{' (removed at the end)' if throwaway else ''}")
        simulator = SimulatorConfig(latency=0.02, jitter=0.03, failure_rate=failure_rate, token="demo-token")
        with SimulatorThread(simulator) as gateway:
            info(f"gateway simulator: {gateway.url} ({failure_rate:.0%} of requests fail with HTTP 500)\n")

            info(f"$ mailcli users import sample-users.csv          # {users} made-up users")
            report = import_users(
                app_state.db,
                io.BytesIO(sample_users_csv(users)),
                name="sample-users.csv",
                default_tz=app_state.tz,
                now=app_state.now(),
            )
            info(f"imported {report.added} users\n")

            info('$ mailcli mailings create -m "New cool python tip..." --tag python-tips --operator-code 911 '
                 "--start now --end +10m")
            mailing = create_mailing(
                app_state.db,
                message=MESSAGE,
                tag="python-tips",
                operator_code="911",
                start="now",
                end="+10m",
                tz=app_state.tz,
                now=app_state.now(),
            )
            emit(mailing, MAILING_COLUMNS, as_json=False)

            info("\n$ mailcli run")
            code = deliver(app_state, gateway.url, "demo-token", RunOptions(concurrency=50))

            info("\n$ mailcli mailings list")
            emit(list_mailings(app_state.db, tz=app_state.tz, now=app_state.now()), MAILING_COLUMNS, as_json=False)
            info(f"\n$ mailcli mailings stats {mailing['id']} --limit 5")
            emit(iter_stats(app_state.db, mailing["id"], tz=app_state.tz, now=app_state.now(), limit=5), MESSAGE_COLUMNS, as_json=False)

            stats = gateway.stats()
            counts = gateway.accepted_counts()
            repeats = sum(1 for n in counts.values() if n > 1)
            info(
                f"\nthe gateway received {stats['requests']} requests: {stats['accepted']} messages accepted "
                f"({repeats} of them more than once), {stats['failures']} simulated failures retried"
            )
        if code:
            raise typer.Exit(code)
    finally:
        app_state.close()
        if throwaway:
            shutil.rmtree(demo_home, ignore_errors=True)

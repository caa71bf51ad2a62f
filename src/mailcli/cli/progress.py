"""What an operator sees while and after ``mailcli run`` delivers.

On a terminal: a Rich progress bar on stderr (done/total, rate, ETA, sent,
failed, retrying) and notes about gateway trouble. Not on a terminal (cron):
no bar and no notes; the final table is the only output, and only when the
run did something. A ``--loop`` worker off a terminal logs a line per minute
of work and the notes.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import datetime, timezone

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mailcli.cli.output import stdout_console
from mailcli.delivery.gateway import Answer, Outcome
from mailcli.delivery.report import RunReport
from mailcli.delivery.store import Claimed


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} msg/s" if speed else "- msg/s", style="progress.data.speed")


class ProgressObserver:
    """A live progress bar of final outcomes (sent or failed); retries show in the counts."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.sent = self.failed = self.retrying = 0
        self.progress = Progress(
            TextColumn("[bold]sending"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task("sending", total=None, detail="")

    def __enter__(self) -> ProgressObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def due(self, count: int) -> None:
        self.progress.update(self.task, total=self.sent + self.failed + count)

    def attempt(self, message: Claimed, attempt: int, answer: Answer, at: datetime) -> None:
        if answer.outcome is Outcome.SENT:
            self.sent += 1
            done = 1
        elif answer.outcome is Outcome.PERMANENT:
            self.failed += 1
            done = 1
        else:
            self.retrying += 1
            done = 0
        detail = f"sent {self.sent} · failed {self.failed} · retries {self.retrying}"
        self.progress.update(self.task, advance=done, detail=detail)

    def note(self, text: str) -> None:
        self.progress.console.log(text)


class WorkerLog:
    """``run --loop`` off a terminal (systemd, docker): a line on stderr per minute of work, and notes.

    Nothing is printed while nothing happens, so an idle worker's log stays empty.
    """

    def __init__(self, every: float = 60.0):
        self.every = every
        self.counts: dict[int, Counter] = {}
        self.last = time.monotonic()

    def due(self, count: int) -> None:
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def attempt(self, message: Claimed, attempt: int, answer: Answer, at: datetime) -> None:
        self.counts.setdefault(message.mailing_id, Counter())[answer.outcome] += 1
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def note(self, text: str) -> None:
        self._line(text)

    def flush(self) -> None:
        for mailing_id, counts in sorted(self.counts.items()):
            self._line(
                f"mailing {mailing_id}: {counts[Outcome.SENT]} sent, {counts[Outcome.PERMANENT]} failed, "
                f"{counts[Outcome.TRANSIENT]} to retry"
            )
        self.counts.clear()
        self.last = time.monotonic()

    def _line(self, text: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        sys.stderr.write(f"{stamp} {text}\n")
        sys.stderr.flush()


def summary_table(report: RunReport) -> Table:
    table = Table(title="delivery", title_justify="left", header_style="bold")
    for header in ("mailing", "sent", "failed", "retries", "deferred", "not sent", "elapsed", "rate"):
        table.add_column(header, justify="right" if header != "mailing" else "left", no_wrap=True)
    for m in report.mailings.values():
        table.add_row(
            str(m.mailing_id),
            str(m.sent),
            str(m.failed),
            str(m.retries),
            str(m.deferred),
            str(m.left.get("not_sent", 0)),
            f"{m.elapsed:.1f} s",
            f"{m.rate:,.0f}/s" if m.sent else "-",
        )
    return table


def print_summary(report: RunReport) -> None:
    stdout_console().print(summary_table(report))


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()

"""What a run did (per mailing and in all) and whom it tells while it works."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mailcli.delivery.gateway import Answer
from mailcli.delivery.store import Claimed


@dataclass
class MailingReport:
    mailing_id: int
    sent: int = 0
    failed: int = 0
    retries: int = 0
    deferred: int = 0
    started: float | None = None
    finished: float | None = None
    left: dict[str, int] = field(default_factory=dict)  # message counts by status after the run

    @property
    def elapsed(self) -> float:
        if self.started is None or self.finished is None:
            return 0.0
        return self.finished - self.started

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mailing_id": self.mailing_id,
            "sent": self.sent,
            "failed": self.failed,
            "retries": self.retries,
            "deferred": self.deferred,
            "not_sent": self.left.get("not_sent", 0),
            "elapsed_s": round(self.elapsed, 3),
            "rate_per_s": round(self.rate, 1),
            "message_count": self.left,
        }


@dataclass
class RunReport:
    mailings: dict[int, MailingReport] = field(default_factory=dict)
    elapsed: float = 0.0
    stopped: str | None = None  # None (done), "interrupted", "terminated", "gave_up", "misconfigured", "error"
    error: str | None = None

    @property
    def sent(self) -> int:
        return sum(m.sent for m in self.mailings.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "elapsed_s": round(self.elapsed, 3),
            "sent": self.sent,
            "stopped": self.stopped,
            "error": self.error,
            "mailings": [m.as_dict() for m in self.mailings.values()],
        }


class Observer(Protocol):
    """What a run tells its audience (progress bar, attempt log); every method is optional work."""

    def due(self, count: int) -> None: ...
    def attempt(self, message: Claimed, attempt: int, answer: Answer, at: datetime) -> None: ...
    def note(self, text: str) -> None: ...


class Observers:
    """Tells several observers (progress bar, attempt log) the same things."""

    def __init__(self, *observers: Observer | None):
        self.observers = [o for o in observers if o is not None]

    def due(self, count: int) -> None:
        for o in self.observers:
            o.due(count)

    def attempt(self, message: Claimed, attempt: int, answer: Answer, at: datetime) -> None:
        for o in self.observers:
            o.attempt(message, attempt, answer, at)

    def note(self, text: str) -> None:
        for o in self.observers:
            o.note(text)

"""When to try again: per message, and for the gateway as a whole.

Retries are durable: a transient failure stores the message's next attempt
time in the database (so a crashed or stopped run loses nothing and the next
run continues the backoff), which is why this is a schedule and not a retry
loop around a call.

* :class:`RetryPolicy` - exponential backoff with jitter per message,
  never sooner than the gateway's ``Retry-After``.
* :class:`GatewayHealth` - when many attempts in a row fail, all senders pause
  (growing pauses) instead of hammering a gateway that is down; when nothing
  has succeeded for ``give_up_after`` seconds the run gives up and leaves the
  messages for the next run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff before attempt ``n + 1`` after ``n`` failed attempts: "equal jitter".

    The delay is half of ``min(cap, base * 2**(n-1))`` plus a random share of
    the other half, so it always grows with ``n`` but retries of many messages
    do not come back in lockstep.
    """

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempts: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(attempts - 1, 0))
        jitter = (rng or random).random()
        backoff = ceiling / 2 + jitter * ceiling / 2
        return max(backoff, retry_after or 0.0)


@dataclass
class GatewayHealth:
    """Tracks consecutive transient failures across all senders of a run."""

    trip_after: int = 10  # consecutive transient failures that pause every sender
    first_pause: float = 0.5
    max_pause: float = 10.0
    give_up_after: float = 60.0  # seconds without a success, while failing, before the run gives up
    clock: Callable[[], float] = time.monotonic
    failures_in_a_row: int = 0
    paused_until: float = 0.0
    _pause: float = 0.0
    _failing_since: float | None = None
    last_error: str | None = field(default=None)

    def success(self) -> None:
        self.failures_in_a_row = 0
        self._pause = 0.0
        self._failing_since = None

    def failure(self, error: str | None, retry_after: float | None = None) -> float:
        """Count a transient failure; return the pause it started for every sender (0 if none)."""
        now = self.clock()
        self.failures_in_a_row += 1
        self.last_error = error
        if self._failing_since is None:
            self._failing_since = now
        if retry_after or self.failures_in_a_row >= self.trip_after:
            # The gateway is struggling (or said how long to wait): everyone pauses.
            self._pause = min(self.max_pause, self._pause * 2 if self._pause else self.first_pause)
            self.paused_until = max(self.paused_until, now + max(self._pause, min(retry_after or 0.0, self.max_pause)))
            self.failures_in_a_row = 0
            return self.paused_until - now
        return 0.0

    def pause_left(self) -> float:
        return max(0.0, self.paused_until - self.clock())

    @property
    def gave_up(self) -> bool:
        return self._failing_since is not None and self.clock() - self._failing_since >= self.give_up_after

    @property
    def failing_for(self) -> float:
        return 0.0 if self._failing_since is None else self.clock() - self._failing_since

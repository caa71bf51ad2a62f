"""The claim-send-record engine behind ``mailcli run``.

One pass over the due mailings:

1. *refresh* (one write transaction): finalise mailings that ended, and
   materialise the audience of due ones (users who joined meanwhile included);
2. *claim* batches of due messages round-robin across mailings, so one big
   mailing cannot starve the others;
3. *send* them with ``concurrency`` requests in flight (optionally at most
   ``rate`` per second), checking before each send that the mailing is still
   due and not cancelled, that the claim is still ours, and that the user's
   sending window is open in their own zone;
4. *record* outcomes in batches (one transaction per batch): sent, retry
   later (backoff with jitter, never sooner than ``Retry-After``), failed
   (400/422), deferred to the window's next opening, or released untouched.

A one-off run repeats passes while retries fall due within ``max_wait`` and
returns; ``loop`` keeps polling. A gateway that keeps failing pauses every
sender (:class:`GatewayHealth`); after ``give_up_after`` seconds without a
success a one-off run stops and leaves the messages for the next run. 401,
403 and 404 stop the run at once with the messages as they were. A stop
request (SIGINT/SIGTERM) lets requests in flight finish for ``stop_grace``
seconds, records every outcome and releases every claim.

The database work runs on one dedicated thread so that a busy SQLite lock
never stalls the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mailcli.db import Database
from mailcli.delivery.gateway import GatewayClient, Outcome, misconfiguration_hint
from mailcli.delivery.report import MailingReport, Observer, Observers, RunReport
from mailcli.delivery.retry import GatewayHealth, RetryPolicy
from mailcli.delivery.store import Claimed, DeliveryStore, DueMailing
from mailcli.delivery.store import Outcome as Record
from mailcli.validation import next_window_opening, utcnow, window_allows

CANCEL_CHECK_EVERY = 1.0  # seconds between checks for cancelled mailings
LEASE_MARGIN = 1.0  # seconds a claim must outlast a request started now
GATHER = 0.005  # seconds the recorder lets outcomes gather before it writes them
ANSWERED = frozenset({"sent", "failed", "retry"})  # outcomes of a request the gateway answered


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 100
    rate: float | None = None  # messages per second, None = as fast as the gateway answers
    loop: bool = False
    interval: float = 5.0  # seconds between polls with ``loop``
    lease: float = 120.0  # seconds a claim lasts; a dead run's messages are taken over after it
    give_up_after: float = 60.0
    max_wait: float = 60.0  # a one-off run waits at most this long for retries to fall due
    request_timeout: float = 10.0
    stop_grace: float = 3.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def _consume_exception(future: asyncio.Future) -> None:
    """A failed write is reported by the run; do not warn about unawaited futures too."""
    if not future.cancelled():
        future.exception()


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{random.randrange(16**4):04x}"


class DeliveryEngine:
    def __init__(
        self,
        db: Database,
        *,
        gateway_url: str,
        token: str | None,
        options: RunOptions = RunOptions(),
        clock: Callable[[], datetime] = utcnow,
        observer: Observer | None = None,
        worker: str | None = None,
    ):
        self.options = options
        self.clock = clock
        self.observer = observer or Observers()
        self.store = DeliveryStore(db, worker or worker_name(), timedelta(seconds=options.lease))
        self.gateway_url = gateway_url
        self.token = token
        self.health = GatewayHealth(give_up_after=options.give_up_after)
        self.report = RunReport()
        self._rng = random.Random()
        self._stopping = asyncio.Event()
        self._buffer: list[Record] = []
        self._written: asyncio.Future | None = None  # resolved once the current buffer is in the database
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._unwritten = 0  # answers received and not yet in the database
        self._unwritten_limit = max(1, options.concurrency // 4)
        self._cancelled: set[int] = set()
        self._inflight = 0
        self._db_pool: ThreadPoolExecutor | None = None
        self._limiter = None
        self._client: GatewayClient | None = None

    # --- entry point -----------------------------------------------------------

    async def run(self) -> RunReport:
        started = time.monotonic()
        self._db_pool = ThreadPoolExecutor(1, thread_name_prefix="mailcli-db")
        self._install_signal_handlers()
        if self.options.rate:
            from aiolimiter import AsyncLimiter

            burst = max(1.0, self.options.rate * 0.1)
            self._limiter = AsyncLimiter(burst, burst / self.options.rate)
        try:
            async with GatewayClient(
                self.gateway_url,
                self.token,
                connections=self.options.concurrency,
                timeout=self.options.request_timeout,
            ) as client:
                self._client = client
                await self._main()
        except Exception as exc:
            self._stop("error", f"{exc}")
            raise
        finally:
            try:
                await self._flush()
                await self._db(self.store.release_all, self.clock())
                await self._final_counts()
            finally:
                self._remove_signal_handlers()
                self._db_pool.shutdown(wait=True)
                self.report.elapsed = time.monotonic() - started
        return self.report

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop soon: finish requests in flight (up to ``stop_grace``), record, release claims."""
        self._stop(reason, None)

    # --- passes ----------------------------------------------------------------

    async def _main(self) -> None:
        while not self._stopping.is_set():
            refreshed = await self._db(self.store.refresh, self.clock())
            due = refreshed.due
            for mailing in due:
                self.report.mailings.setdefault(mailing.id, MailingReport(mailing.id))
            if due:
                self.observer.due(await self._db(self.store.queued_count, [m.id for m in due], self.clock()))
                await self._pass(due)
            if self._stopping.is_set():
                return
            if self.health.gave_up and not self.options.loop:
                self._stop(
                    "gave_up",
                    f"the gateway has not accepted a message for {self.health.failing_for:.0f} s "
                    f"(last error: {self.health.last_error}); the rest is left for the next run",
                )
                return
            wait = await self._time_to_next_due(due)
            if self.options.loop:
                wait = self.options.interval if wait is None else min(wait, self.options.interval)
            elif wait is None or wait > self.options.max_wait:
                return
            await self._sleep(max(wait, 0.05))

    async def _time_to_next_due(self, due: list[DueMailing]) -> float | None:
        nxt = await self._db(self.store.next_due, [m.id for m in due])
        if nxt is None:
            return None
        return (nxt - self.clock()).total_seconds()

    async def _pass(self, due: list[DueMailing]) -> None:
        queue: asyncio.Queue[tuple[DueMailing, Claimed]] = asyncio.Queue()
        senders = [asyncio.create_task(self._sender(queue)) for _ in range(self.options.concurrency)]
        recorder = asyncio.create_task(self._recorder())
        try:
            await self._produce(due, queue)
            await self._drain(queue)
        finally:
            recorder.cancel()
            for task in senders:
                task.cancel()
            await asyncio.gather(recorder, *senders, return_exceptions=True)
            await self._flush()

    async def _drain(self, queue: asyncio.Queue) -> None:
        """Wait for the claimed messages to be sent; after a stop request, for ``stop_grace`` at most."""
        drained = asyncio.ensure_future(queue.join())
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({drained, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not drained.done():
                await asyncio.wait({drained}, timeout=self.options.stop_grace)
        finally:  # requests still in flight now are cancelled; their claims are released
            drained.cancel()
            stopped.cancel()

    async def _produce(self, due: list[DueMailing], queue: asyncio.Queue) -> None:
        capacity = 2 * self.options.concurrency
        low_water = capacity // 2
        active = list(due)
        last_cancel_check = time.monotonic()
        while active and not self._stopping.is_set():
            if time.monotonic() - last_cancel_check > CANCEL_CHECK_EVERY:
                self._cancelled |= await self._db(self.store.cancelled, [m.id for m in active])
                last_cancel_check = time.monotonic()
            claimed = 0
            for mailing in list(active):
                if mailing.id in self._cancelled or self.clock() >= mailing.end_at:
                    active.remove(mailing)
                    continue
                room = capacity - queue.qsize()
                if room <= low_water:
                    break
                rows = await self._db(self.store.claim, mailing.id, room, self.clock())
                claimed += len(rows)
                for row in rows:
                    queue.put_nowait((mailing, row))
            if claimed:
                while queue.qsize() > low_water and not self._stopping.is_set():
                    await asyncio.sleep(0.01)
            elif queue.qsize() == 0 and self._inflight == 0 and not self._buffer:
                return  # nothing due now; retries and windows are the outer loop's business
            else:
                await asyncio.sleep(0.02)

    # --- sending -----------------------------------------------------------------

    async def _sender(self, queue: asyncio.Queue) -> None:
        while True:
            mailing, message = await queue.get()
            self._inflight += 1
            try:
                if not self._stopping.is_set():
                    await self._deliver(mailing, message)
            except Exception as exc:  # a bug or a broken database: stop rather than lose track
                self._stop("error", f"{type(exc).__name__}: {exc}")
            finally:
                self._inflight -= 1
                queue.task_done()

    async def _deliver(self, mailing: DueMailing, message: Claimed) -> None:
        while (pause := self.health.pause_left()) > 0 and not self._stopping.is_set():
            await self._sleep(pause)
        if self._limiter is not None:
            await self._limiter.acquire()
        if self._stopping.is_set():
            return  # released with the other claims
        now = self.clock()
        if mailing.id in self._cancelled or now >= mailing.end_at:
            return await self._keep(Record(message.id, "release", now))
        if (message.lease_until - now).total_seconds() < self.options.request_timeout + LEASE_MARGIN:
            return await self._keep(Record(message.id, "release", now))  # the claim could expire mid-request
        if mailing.window_start is not None and not window_allows(
            mailing.window_start, mailing.window_end, now, message.time_zone
        ):
            opening = next_window_opening(mailing.window_start, mailing.window_end, now, message.time_zone)
            self.report.mailings[mailing.id].deferred += 1
            return await self._keep(Record(message.id, "defer", now, opening))

        assert self._client is not None
        answer = await self._client.send(self._client.request(message.id, message.phone, mailing.message))
        at = self.clock()
        attempt = message.attempts + 1
        self.observer.attempt(message, attempt, answer, at)
        stats = self.report.mailings[mailing.id]
        stats.started = stats.started or time.monotonic() - answer.latency
        stats.finished = time.monotonic()
        if answer.outcome is Outcome.SENT:
            self.health.success()
            stats.sent += 1
            await self._keep(Record(message.id, "sent", at), answered=True)
        elif answer.outcome is Outcome.PERMANENT:
            self.health.success()  # the gateway is up; this message is what it refuses
            stats.failed += 1
            await self._keep(Record(message.id, "failed", at, error=answer.error), answered=True)
        elif answer.outcome is Outcome.TRANSIENT:
            paused = self.health.failure(answer.error, answer.retry_after)
            if paused:
                self.observer.note(f"gateway trouble ({answer.error}): every sender pauses {paused:.1f} s")
            stats.retries += 1
            delay = self.options.retry.delay(attempt, answer.retry_after, self._rng)
            await self._keep(Record(message.id, "retry", at, at + timedelta(seconds=delay), answer.error), answered=True)
        else:  # misconfigured: stop everything, leave the message as it was
            self._stop("misconfigured", misconfiguration_hint(answer))

    async def _keep(self, record: Record, *, answered: bool = False) -> None:
        """Queue an outcome for the recorder.

        The recorder writes whatever arrived meanwhile in one transaction, 5 ms
        after the first of them and once its previous write is done (group commit),
        so an answer waits a few milliseconds to be in the database. A sender does not wait for that unless the
        recorder falls behind: once more than ``concurrency / 4`` answers wait to be
        written, senders wait for the write. A run killed at any moment has therefore
        sent at most 1.25 x ``concurrency`` messages whose outcome is not recorded
        (in practice the requests in flight and the few answers of one commit).
        """
        self._buffer.append(record)
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
            self._written.add_done_callback(_consume_exception)
        written = self._written
        self._wake.set()
        if answered:
            self._unwritten += 1
            if self._unwritten > self._unwritten_limit:
                await written

    # --- recording ---------------------------------------------------------------

    async def _recorder(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(GATHER)  # let a few more outcomes join this transaction
            self._wake.clear()
            try:
                await self._flush()
            except Exception as exc:  # kept in the buffer; the run stops and tries once more at the end
                self._stop("error", str(exc))
                return

    async def _flush(self) -> None:
        async with self._flush_lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            written, self._written = self._written, None
            write = asyncio.get_running_loop().run_in_executor(self._db_pool, self.store.record, batch)
            cancelled = False
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # The batch is being written on the database thread: know how that ends
                # (writing it again would count its attempts twice), then stop.
                cancelled = True
                await asyncio.wait({write})
            except Exception:
                pass  # looked at below
            error = write.exception()
            if error is not None:
                self._buffer[:0] = batch  # kept for the final flush
                if written is not None and not written.done():
                    written.set_exception(error)
                raise error
            self._unwritten -= sum(1 for record in batch if record.kind in ANSWERED)
            if written is not None and not written.done():
                written.set_result(None)
            if cancelled:
                raise asyncio.CancelledError

    async def _final_counts(self) -> None:
        counts = await self._db(self.store.counts, list(self.report.mailings), self.clock())
        for mailing_id, left in counts.items():
            self.report.mailings[mailing_id].left = left

    # --- plumbing ------------------------------------------------------------------

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db_pool, fn, *args)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when a stop is requested."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _stop(self, reason: str, error: str | None) -> None:
        if not self._stopping.is_set():
            self.report.stopped = reason
            self.report.error = error
            self._stopping.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "interrupted")
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "terminated")

    def _remove_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)

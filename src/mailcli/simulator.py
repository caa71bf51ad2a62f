"""A local HTTP sending gateway for tests, demos and benchmarks.

:class:`GatewaySimulator` serves the gateway contract on ``/v1`` with
``aiohttp.web``: ``POST /v1/send/{msgId}`` with a bearer token and a JSON body
``{"id": msgId, "phone": 7XXXXXXXXXX, "text": "..."}`` is answered
``200 {"code": 0, "message": "OK"}``; an invalid request gets 400 and a wrong
token 401. It is idempotent by msgId: a repeat is answered 200 again and
counted as a duplicate. Latency, jitter, failures (optionally with
``Retry-After``), malformed answers and permanently rejected phones can be
injected, reproducibly when seeded.

Per request the checks run in this order: auth (401), parse and validate
(400), rejected phone (400), latency, failure injection, malformed injection,
acceptance (200). Only the last step marks a message accepted.

``GET /v1/stats``, ``GET /v1/accepted`` and ``POST /v1/reset`` expose the
counters to other processes. :class:`SimulatorThread` runs a simulator in a
background thread for synchronous callers; :func:`serve` runs one in the
foreground until SIGINT or SIGTERM (``mailcli gateway serve``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from aiohttp import web

STAT_KEYS = ("requests", "accepted", "duplicates", "failures", "malformed", "rejected", "unauthorized")
MSG_ID_RE = re.compile(r"-?[0-9]+", re.ASCII)
PHONE_MIN, PHONE_MAX = 70_000_000_000, 79_999_999_999
KEEPALIVE_TIMEOUT = 75.0  # seconds an idle client connection stays open for reuse
SHUTDOWN_TIMEOUT = 0.5  # seconds in-flight requests get when the server stops
THREAD_TIMEOUT = 10.0  # seconds to wait for the simulator thread to start or answer
JSON = "application/json"
OK_BODY = b'{"code": 0, "message": "OK"}'
UNAUTHORIZED_BODY = b'{"code": 401, "message": "unauthorized"}'
MALFORMED_BODY = b"<html>oops</html>"
PREVIEW_LENGTH = 60

T = TypeVar("T")


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulated gateway listens and misbehaves; the defaults accept everything at once.

    Rates are probabilities in 0..1 drawn from a private ``random.Random(seed)``;
    ``latency`` and ``jitter`` are seconds added before every answer.
    ``record_path`` gets one JSON line per first acceptance, written on stop.
    """

    host: str = "127.0.0.1"
    port: int = 0
    latency: float = 0.0
    jitter: float = 0.0
    failure_rate: float = 0.0
    failure_status: int = 500
    retry_after: float | None = None
    malformed_rate: float = 0.0
    reject_phones: frozenset[int] = frozenset()
    token: str | None = None
    seed: int | None = None
    record_path: Path | None = None
    quiet: bool = True

    def __post_init__(self) -> None:
        for name in ("failure_rate", "malformed_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("latency", "jitter", "retry_after"):
            value = getattr(self, name)
            if value is not None and not value >= 0.0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if not 400 <= self.failure_status <= 599:
            raise ValueError(f"failure_status must be an HTTP error status 400..599, got {self.failure_status!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535 (0 picks a free port), got {self.port!r}")
        object.__setattr__(self, "reject_phones", frozenset(self.reject_phones))


class _BadRequest(Exception):
    """A request the gateway answers with 400; the argument is the reason."""


def _parse(raw_id: str, body: bytes) -> tuple[int, int, str]:
    """The (msgId, phone, text) of a send request, or raise :class:`_BadRequest`."""
    if not MSG_ID_RE.fullmatch(raw_id):
        raise _BadRequest(f"msgId must be an integer, got {raw_id!r}")
    msg_id = int(raw_id)
    try:
        payload = json.loads(body)
    except ValueError:
        raise _BadRequest("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise _BadRequest("body must be a JSON object")
    if "id" not in payload:
        raise _BadRequest("id is required")
    body_id = payload["id"]
    if type(body_id) is not int:
        raise _BadRequest("id must be an integer")
    if body_id != msg_id:
        raise _BadRequest(f"id {body_id} does not match msgId {msg_id}")
    phone = payload.get("phone")
    if type(phone) is not int or not PHONE_MIN <= phone <= PHONE_MAX:
        raise _BadRequest("phone must be an integer of 11 digits starting with 7")
    text = payload.get("text")
    if not isinstance(text, str):
        raise _BadRequest("text must be a string")
    return msg_id, phone, text


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"code": status, "message": message}).encode()


def _preview(text: str) -> str:
    """The text on one short line, for the request log."""
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_LENGTH else line[: PREVIEW_LENGTH - 1] + "…"


class GatewaySimulator:
    """The simulated gateway: an aiohttp server plus the counters of what it answered.

    All state lives on the event loop that runs :meth:`start`; call the
    accessors from that loop (or use :class:`SimulatorThread`).
    """

    def __init__(self, config: SimulatorConfig = SimulatorConfig()) -> None:
        self.config = config
        self.url: str | None = None
        self._rng = random.Random(config.seed)
        self._expected_auth = None if config.token is None else f"Bearer {config.token}"
        self._failure_body = _error_body(config.failure_status, "simulated failure")
        self._failure_headers: dict[str, str] = {}
        if config.retry_after is not None:
            seconds = float(config.retry_after)
            self._failure_headers["Retry-After"] = str(int(seconds)) if seconds.is_integer() else str(seconds)
        self._counters = dict.fromkeys(STAT_KEYS, 0)
        self._counts: dict[int, int] = {}
        self._messages: dict[int, dict[str, Any]] = {}
        self._record: IO[str] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Start listening and return the base URL, ``http://HOST:PORT/v1``."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application()
        app.router.add_post("/v1/send/{msg_id}", self._send)
        app.router.add_get("/v1/stats", self._stats_endpoint)
        app.router.add_get("/v1/accepted", self._accepted_endpoint)
        app.router.add_post("/v1/reset", self._reset_endpoint)
        runner = web.AppRunner(
            app, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.host, self.config.port, backlog=1024).start()
        except BaseException:
            await runner.cleanup()
            raise
        if self.config.record_path is not None:
            self.config.record_path.parent.mkdir(parents=True, exist_ok=True)
            self._record = self.config.record_path.open("a", encoding="utf-8")
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self.url = f"http://{host}:{port}/v1"
        return self.url

    async def stop(self) -> None:
        """Stop listening (in-flight requests get a moment to finish) and flush the record."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._record is not None:
            self._record.close()
            self._record = None

    def stats(self) -> dict[str, int]:
        """Counters: requests, accepted (unique msgIds), duplicates, failures, malformed, rejected, unauthorized."""
        return dict(self._counters)

    def accepted_counts(self) -> dict[int, int]:
        """msgId -> number of 200-OK acceptances (1 = once; 2 or more = repeats)."""
        return dict(self._counts)

    def accepted_messages(self) -> dict[int, dict[str, Any]]:
        """msgId -> the first accepted body (id, phone, text) and ``headers: {"Authorization": ...}``."""
        return copy.deepcopy(self._messages)

    def reset(self) -> None:
        """Forget all counters and accepted messages (the record file is left as it is)."""
        self._counters.update(dict.fromkeys(STAT_KEYS, 0))
        self._counts.clear()
        self._messages.clear()

    # --- request handlers -----------------------------------------------------

    async def _send(self, request: web.Request) -> web.Response:
        counters = self._counters
        counters["requests"] += 1
        config = self.config
        raw_id = request.match_info["msg_id"]
        authorization = request.headers.get("Authorization")
        if self._expected_auth is not None and authorization != self._expected_auth:
            counters["unauthorized"] += 1
            self._log(f"401 #{raw_id} unauthorized")
            return web.Response(
                status=401, body=UNAUTHORIZED_BODY, content_type=JSON, headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            msg_id, phone, text = _parse(raw_id, await request.read())
            if phone in config.reject_phones:
                raise _BadRequest(f"phone {phone} is rejected")
        except _BadRequest as exc:
            counters["rejected"] += 1
            self._log(f"400 #{raw_id} {exc}")
            return web.Response(status=400, body=_error_body(400, str(exc)), content_type=JSON)

        rng = self._rng
        delay = config.latency + (rng.random() * config.jitter if config.jitter else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if config.failure_rate and rng.random() < config.failure_rate:
            counters["failures"] += 1
            self._log(f"{config.failure_status} #{msg_id} simulated failure")
            return web.Response(
                status=config.failure_status,
                body=self._failure_body,
                content_type=JSON,
                headers=self._failure_headers,
            )
        if config.malformed_rate and rng.random() < config.malformed_rate:
            counters["malformed"] += 1
            self._log(f"200 #{msg_id} malformed answer")
            return web.Response(body=MALFORMED_BODY, content_type="text/html")

        self._accept(msg_id, phone, text, authorization)
        return web.Response(body=OK_BODY, content_type=JSON)

    def _accept(self, msg_id: int, phone: int, text: str, authorization: str | None) -> None:
        count = self._counts.get(msg_id, 0) + 1
        self._counts[msg_id] = count
        if count > 1:
            self._counters["duplicates"] += 1
            self._log(f"200 #{msg_id} duplicate")
            return
        self._counters["accepted"] += 1
        self._messages[msg_id] = {
            "id": msg_id,
            "phone": phone,
            "text": text,
            "headers": {"Authorization": authorization},
        }
        if self._record is not None:
            at = datetime.now(UTC).isoformat(timespec="milliseconds")
            line = json.dumps({"id": msg_id, "phone": phone, "text": text, "at": at}, ensure_ascii=False)
            self._record.write(line + "\n")
        self._log(f"200 #{msg_id} -> {phone}: {_preview(text)}")

    async def _stats_endpoint(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _accepted_endpoint(self, request: web.Request) -> web.Response:
        return web.json_response({str(msg_id): count for msg_id, count in self._counts.items()})

    async def _reset_endpoint(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=OK_BODY, content_type=JSON)

    def _log(self, line: str) -> None:
        if not self.config.quiet:
            print(line, flush=True)


class SimulatorThread:
    """A :class:`GatewaySimulator` on its own event loop in a daemon thread, as a context manager.

    The accessors are thread-safe: they run on the simulator's loop and wait
    for the answer.
    """

    def __init__(self, config: SimulatorConfig = SimulatorConfig()) -> None:
        self.simulator = GatewaySimulator(config)
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SimulatorThread:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="gateway-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(THREAD_TIMEOUT):
            raise RuntimeError(f"the gateway simulator did not start within {THREAD_TIMEOUT:g} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            self.url = await self.simulator.start()
        except BaseException as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.simulator.stop()

    def _call(self, fn: Callable[[], T]) -> T:
        if self._loop is None:
            raise RuntimeError("the simulator thread is not running")

        async def invoke() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(THREAD_TIMEOUT)

    def stats(self) -> dict[str, int]:
        return self._call(self.simulator.stats)

    def accepted_counts(self) -> dict[int, int]:
        return self._call(self.simulator.accepted_counts)

    def accepted_messages(self) -> dict[int, dict[str, Any]]:
        return self._call(self.simulator.accepted_messages)

    def reset(self) -> None:
        self._call(self.simulator.reset)


def serve(config: SimulatorConfig, on_ready: Callable[[str], None] | None = None) -> dict[str, int]:
    """Run a simulator in the foreground until SIGINT or SIGTERM and return its final stats.

    ``on_ready(url)`` is called once the server listens. Must run in the main
    thread (signal handlers); a loop must not already be running.
    """
    return asyncio.run(_serve(config, on_ready))


async def _serve(config: SimulatorConfig, on_ready: Callable[[str], None] | None) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    simulator = GatewaySimulator(config)
    try:
        url = await simulator.start()
        if on_ready is not None:
            on_ready(url)
        await stopping.wait()
    finally:
        await simulator.stop()
        for signum in signals:
            loop.remove_signal_handler(signum)
    return simulator.stats()

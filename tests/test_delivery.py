"""Delivery (SPEC section 4), in-process: ``mailcli run`` through the CLI and the engine with an injected clock.

The gateway is either the package's simulator (:class:`SimulatorThread`) or, where an
answer must be scripted per message and attempt (fail once then succeed, 403, 422, a
slow first answer), a tiny aiohttp server in this file that records every request with
its arrival time. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from mailcli.config import load_settings
from mailcli.db import open_database
from mailcli.delivery.engine import DeliveryEngine, RunOptions
from mailcli.delivery.report import RunReport
from mailcli.delivery.retry import RetryPolicy
from mailcli.simulator import SimulatorConfig, SimulatorThread

UTC = UTC
OPERATOR_TZ = "Europe/Moscow"
MOSCOW = "Europe/Moscow"
VLADIVOSTOK = "Asia/Vladivostok"
TOKEN = "s3cret-token-1234"
TEXT = "New cool python tip"
OK_BODY = b'{"code": 0, "message": "OK"}'
OUTPUT_FORMAT = "%d.%m.%Y %H:%M:%S"
SEND_PATH_RE = re.compile(r"/v1/send/([0-9]+)")

# phones: 911 is the mailing's operator code in most tests
P1, P2, P3, P4, P5 = "79110000001", "79110000002", "79110000003", "79110000004", "79110000005"
OTHER_CODE = "79120000001"


# --- a scripted gateway ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = OK_BODY
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


OK = Reply()


@dataclass(frozen=True)
class Seen:
    """One request as the gateway received it."""

    at: float  # time.monotonic() on arrival
    wall: datetime  # UTC on arrival
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    msg_id: int | None  # from the path
    phone: int | None  # from the body
    attempt: int  # 1 for the first request with this msg_id


class ScriptedGateway:
    """An HTTP gateway on 127.0.0.1 that answers ``respond(seen)`` and records every request."""

    def __init__(self, respond: Callable[[Seen], Reply] | None = None):
        self.respond = respond or (lambda seen: OK)
        self.requests: list[Seen] = []
        self.url = ""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ScriptedGateway:
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(ready),), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the scripted gateway did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stopping is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        match = SEND_PATH_RE.fullmatch(request.path)
        msg_id = int(match.group(1)) if match else None
        try:
            phone = json.loads(body).get("phone")
        except (ValueError, AttributeError):
            phone = None
        with self._lock:
            attempt = 1 + sum(1 for s in self.requests if s.msg_id == msg_id)
            seen = Seen(
                time.monotonic(), datetime.now(UTC), request.method, request.path, dict(request.headers), body,
                msg_id, phone, attempt,
            )
            self.requests.append(seen)
        reply = self.respond(seen)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers, content_type=reply.content_type)

    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self.requests)

    def for_id(self, msg_id: int) -> list[Seen]:
        return [s for s in self.seen() if s.msg_id == msg_id]

    def phones(self) -> list[int | None]:
        return [s.phone for s in self.seen()]


def by_phone(script: dict[str, Callable[[Seen], Reply]]) -> Callable[[Seen], Reply]:
    """Answer per phone (as sent in the body); everyone else gets 200 OK."""
    return lambda seen: script.get(str(seen.phone), lambda s: OK)(seen)


# --- helpers ----------------------------------------------------------------------------------


def add_user(cli, phone: str, tag: str = "python-tips", tz: str = MOSCOW) -> None:
    cli.ok("users", "add", phone, "--tag", tag, "--tz", tz)


def import_users(cli, tmp_path: Path, phones: list[str], tag: str = "python-tips", tz: str = MOSCOW) -> None:
    path = tmp_path / f"users-{len(phones)}-{tag}.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phone_number", "tag", "time_zone"])
        writer.writerows([p, tag, tz] for p in phones)
    cli.ok("users", "import", str(path))


def phones(n: int, code: str = "911", first: int = 1) -> list[str]:
    return [f"7{code}{i:07d}" for i in range(first, first + n)]


def create_mailing(
    cli,
    *,
    tag: str = "python-tips",
    code: str = "911",
    start: str = "now",
    end: str = "+1h",
    window: str | None = None,
    message: str = TEXT,
) -> int:
    args = ["mailings", "create", "-m", message, "--tag", tag, "--operator-code", code, "--start", start, "--end", end]
    if window:
        args += ["--window", window]
    return cli.json(*args)["id"]


def stats(cli, mailing_id: int) -> list[dict]:
    return cli.json("mailings", "stats", str(mailing_id))


def by_phone_stats(cli, mailing_id: int) -> dict[str, dict]:
    return {m["client"]["phone_number"]: m for m in stats(cli, mailing_id)}


def message_rows(cli, mailing_id: int) -> dict[str, tuple]:
    """phone -> (status column, attempts, claimed_by, sent_at) straight from the messages table."""
    rows = cli.sql(
        "SELECT u.phone_number, m.status, m.attempts, m.claimed_by, m.sent_at FROM messages m "
        "JOIN users u ON u.id = m.user_id WHERE m.mailing_id = ?",
        (mailing_id,),
    )
    return {r[0]: r[1:] for r in rows}


def run(cli, url: str | None, *args: str, token: str | None = TOKEN):
    """``mailcli run`` in-process with the gateway settings in the environment."""
    env = {"MAILCLI_GATEWAY_URL": url, "MAILCLI_GATEWAY_TOKEN": token}
    return cli("run", *args, env=env)


def run_ok(cli, url: str, *args: str, token: str | None = TOKEN):
    result = run(cli, url, *args, token=token)
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def engine_run(url: str, *, token: str | None = TOKEN, clock: Callable[[], datetime] | None = None, **options) -> RunReport:
    """One engine run on the test's database (MAILCLI_HOME), with an optional injected clock."""
    db = open_database(load_settings())
    try:
        kwargs = {"clock": clock} if clock is not None else {}
        engine = DeliveryEngine(db, gateway_url=url, token=token, options=RunOptions(**options), **kwargs)
        return asyncio.run(engine.run())
    finally:
        db.close()


def utcnow() -> datetime:
    return datetime.now(UTC)


def clock_at(moment: datetime) -> Callable[[], datetime]:
    """A clock that reads ``moment`` now and moves on in real time."""
    offset = moment - utcnow()
    return lambda: utcnow() + offset


def next_utc(hour: int, minute: int, after: datetime) -> datetime:
    """The first moment after ``after`` whose UTC time of day is hour:minute."""
    moment = after.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return moment if moment > after else moment + timedelta(days=1)


def end_at_of(cli, mailing_id: int) -> datetime:
    (raw,) = cli.sql("SELECT end_at FROM mailings WHERE id = ?", (mailing_id,))[0]
    return datetime.fromisoformat(raw).replace(tzinfo=UTC)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorConfig(token=TOKEN)) as s:
        yield s


# --- the request --------------------------------------------------------------------------------


def test_request_is_post_send_msgid_with_bearer_token_and_json_body(cli) -> None:
    add_user(cli, P1, tag="Python-tips")
    text = "Новый совет: use f-strings \"quoted\" & more"
    mailing = create_mailing(cli, message=text)
    with ScriptedGateway() as gw:
        run_ok(cli, gw.url)
    (message,) = stats(cli, mailing)
    msg_id = message["id"]
    (req,) = gw.seen()
    assert req.method == "POST"
    assert req.path == f"/v1/send/{msg_id}"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Content-Type"].startswith("application/json")
    body = json.loads(req.body)
    assert body == {"id": msg_id, "phone": int(P1), "text": text}
    assert type(body["id"]) is int and type(body["phone"]) is int


def test_request_reaches_the_simulator_with_the_token_and_stats_message_id(cli, sim) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli)
    run_ok(cli, sim.url)
    (message,) = stats(cli, mailing)
    assert sim.accepted_messages() == {
        message["id"]: {"id": message["id"], "phone": int(P1), "text": TEXT, "headers": {"Authorization": f"Bearer {TOKEN}"}}
    }


# --- audience ------------------------------------------------------------------------------------


def test_audience_is_operator_code_and_tag_ignoring_case_of_current_users(cli, sim) -> None:
    add_user(cli, P1, tag="Python-tips")
    add_user(cli, P2, tag="PYTHON-TIPS", tz=VLADIVOSTOK)
    add_user(cli, P3, tag="python-tips")
    add_user(cli, OTHER_CODE, tag="python-tips")  # other operator code
    add_user(cli, P4, tag="java-tips")  # other tag
    add_user(cli, P5, tag="python-tips-extra")  # not the same tag
    cli.ok("users", "remove", P3)  # removed before the run
    mailing = create_mailing(cli, tag="python-tips", code="911")

    run_ok(cli, sim.url)

    sent = {m["phone"] for m in sim.accepted_messages().values()}
    assert sent == {int(P1), int(P2)}
    assert {p: m["status"] for p, m in by_phone_stats(cli, mailing).items()} == {P1: "sent", P2: "sent"}


def test_user_who_joins_while_mailing_is_due_is_sent_on_next_run_and_nobody_twice(cli, sim) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli)
    run_ok(cli, sim.url)
    assert {m["phone"] for m in sim.accepted_messages().values()} == {int(P1)}

    add_user(cli, P2, tag="Python-Tips")
    run_ok(cli, sim.url)

    assert {m["phone"] for m in sim.accepted_messages().values()} == {int(P1), int(P2)}
    assert set(sim.accepted_counts().values()) == {1}
    assert sim.stats()["duplicates"] == 0
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}


def test_removed_user_gets_nothing_even_when_already_queued(cli, sim) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    # A run with a wrong token materialises the messages and leaves them queued, untouched.
    result = run(cli, sim.url, token="wrong-token")
    assert result.exit_code == 1
    assert set(message_rows(cli, mailing)) == {P1, P2}

    cli.ok("users", "remove", P2)
    run_ok(cli, sim.url)

    assert {m["phone"] for m in sim.accepted_messages().values()} == {int(P1)}
    assert by_phone_stats(cli, mailing)[P2]["status"] == "not_sent"


def test_user_who_leaves_the_audience_gets_nothing_more(cli, sim) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    assert run(cli, sim.url, token="wrong-token").exit_code == 1  # messages queued, untouched
    cli.ok("users", "update", P2, "--tag", "java-tips")
    run_ok(cli, sim.url)
    assert {m["phone"] for m in sim.accepted_messages().values()} == {int(P1)}
    assert by_phone_stats(cli, mailing)[P2]["status"] == "not_sent"


def test_user_who_leaves_and_rejoins_the_audience_while_due_is_sent_to(cli, sim) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    assert run(cli, sim.url, token="wrong-token").exit_code == 1  # messages queued, never attempted
    cli.ok("users", "update", P2, "--tag", "java-tips")
    cli.ok("users", "update", P2, "--tag", "Python-Tips")  # back in the audience while the mailing is due
    run_ok(cli, sim.url)
    assert {m["phone"] for m in sim.accepted_messages().values()} == {int(P1), int(P2)}
    assert by_phone_stats(cli, mailing)[P2]["status"] == "sent"


def test_each_user_gets_one_message_whose_id_is_reused_on_every_attempt(cli) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    flaky = lambda seen: Reply(503, b'{"code": 503}') if seen.attempt <= 2 else OK  # noqa: E731
    with ScriptedGateway(by_phone({P1: flaky})) as gw:
        run_ok(cli, gw.url)

    messages = by_phone_stats(cli, mailing)
    assert len(stats(cli, mailing)) == 2
    m1 = messages[P1]
    assert m1["status"] == "sent" and m1["attempts"] == 3
    tries = [s for s in gw.seen() if s.phone == int(P1)]
    assert len(tries) == 3
    assert {s.path for s in tries} == {f"/v1/send/{m1['id']}"}
    assert {json.loads(s.body)["id"] for s in tries} == {m1["id"]}
    assert [s.phone for s in gw.seen()].count(int(P2)) == 1
    assert messages[P2]["id"] != m1["id"]


# --- outcomes ------------------------------------------------------------------------------------


def test_200_code_0_marks_message_sent_with_sent_at(cli, sim) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli)
    before = utcnow().replace(microsecond=0)
    run_ok(cli, sim.url)
    after = utcnow()
    (message,) = stats(cli, mailing)
    assert message["status"] == "sent"
    sent_at = datetime.strptime(message["sent_at"], OUTPUT_FORMAT).replace(tzinfo=ZoneInfo(OPERATOR_TZ))
    assert before <= sent_at <= after
    assert message_rows(cli, mailing)[P1][:3] == ("sent", 1, None)


@pytest.mark.slow
def test_transient_failures_are_retried_until_every_message_is_accepted_exactly_once(cli, tmp_path) -> None:
    import_users(cli, tmp_path, phones(60))
    mailing = create_mailing(cli)
    with SimulatorThread(SimulatorConfig(token=TOKEN, failure_rate=0.3, seed=42)) as sim:
        run_ok(cli, sim.url, "--give-up-after", "30")
        counts, simstats = sim.accepted_counts(), sim.stats()
    assert simstats["failures"] > 0
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}
    assert len(counts) == 60
    assert set(counts.values()) == {1}
    assert simstats["duplicates"] == 0
    assert set(counts) == {m["id"] for m in stats(cli, mailing)}


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_before_the_next_attempt(cli, status) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli)
    first_busy = lambda seen: Reply(status, b'{"code": 1}', {"Retry-After": "2"}) if seen.attempt == 1 else OK  # noqa: E731
    with ScriptedGateway(first_busy) as gw:
        run_ok(cli, gw.url)
    (message,) = stats(cli, mailing)
    tries = gw.for_id(message["id"])
    assert len(tries) == 2
    assert tries[1].at - tries[0].at >= 2.0
    assert message["status"] == "sent" and message["attempts"] == 2


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b"", b'{"message": "OK"}', b'{"code": 0'],
    ids=["html", "empty", "no-code", "truncated-json"],
)
def test_malformed_200_answer_is_retried(cli, body) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli)
    first_bad = lambda seen: Reply(200, body, content_type="text/html") if seen.attempt == 1 else OK  # noqa: E731
    with ScriptedGateway(first_bad) as gw:
        run_ok(cli, gw.url)
    (message,) = stats(cli, mailing)
    assert len(gw.for_id(message["id"])) == 2
    assert message["status"] == "sent" and message["attempts"] == 2


def test_malformed_answers_from_simulator_lose_nothing(cli, tmp_path) -> None:
    import_users(cli, tmp_path, phones(50))
    mailing = create_mailing(cli)
    with SimulatorThread(SimulatorConfig(token=TOKEN, malformed_rate=0.4, seed=7)) as sim:
        engine_run(sim.url, retry=RetryPolicy(base=0.02, cap=0.2), give_up_after=30)
        counts, simstats = sim.accepted_counts(), sim.stats()
    assert simstats["malformed"] > 0
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}
    assert len(counts) == 50 and set(counts.values()) == {1}


def test_request_timeout_is_retried(cli) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli)
    slow_first = lambda seen: Reply(delay=2.0) if seen.attempt == 1 else OK  # noqa: E731
    with ScriptedGateway(slow_first) as gw:
        started = time.monotonic()
        run_ok(cli, gw.url, "--timeout", "0.5")
        elapsed = time.monotonic() - started
    (message,) = stats(cli, mailing)
    assert len(gw.for_id(message["id"])) == 2
    assert message["status"] == "sent" and message["attempts"] == 2
    assert elapsed < 10


def test_400_fails_the_message_after_exactly_one_attempt(cli) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    with SimulatorThread(SimulatorConfig(token=TOKEN, reject_phones=frozenset({int(P1)}))) as sim:
        run_ok(cli, sim.url)
        simstats = sim.stats()
    messages = by_phone_stats(cli, mailing)
    assert messages[P1]["status"] == "failed" and messages[P1]["attempts"] == 1
    assert messages[P1]["sent_at"] is None
    assert messages[P2]["status"] == "sent"
    assert simstats["rejected"] == 1
    assert simstats["requests"] == 2


def test_422_fails_the_message_after_exactly_one_attempt(cli) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    unprocessable = lambda seen: Reply(422, b'{"code": 422, "message": "bad text"}')  # noqa: E731
    with ScriptedGateway(by_phone({P1: unprocessable})) as gw:
        run_ok(cli, gw.url)
    messages = by_phone_stats(cli, mailing)
    assert messages[P1]["status"] == "failed" and messages[P1]["attempts"] == 1
    assert len(gw.for_id(messages[P1]["id"])) == 1
    assert messages[P2]["status"] == "sent"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_misconfigured_gateway_stops_run_with_exit_1_and_leaves_messages_untouched(cli, status) -> None:
    for phone in phones(20):
        add_user(cli, phone)
    mailing = create_mailing(cli)
    refuse = lambda seen: Reply(status, json.dumps({"code": status}).encode())  # noqa: E731
    with ScriptedGateway(refuse) as gw:
        result = run(cli, gw.url, "--concurrency", "1")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(status) in lines[0]
    assert "Traceback" not in result.stderr
    assert len(gw.seen()) == 1  # stopped at the first refusal
    rows = message_rows(cli, mailing)
    assert len(rows) == 20
    assert set(rows.values()) == {("queued", 0, None, None)}
    assert {m["status"] for m in stats(cli, mailing)} == {"not_sent"}


def test_wrong_token_401_from_simulator_leaves_messages_for_a_run_with_the_right_token(cli, sim) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    result = run(cli, sim.url, token="not-the-token")
    assert result.exit_code == 1
    assert "401" in result.stderr and "token" in result.stderr
    assert set(message_rows(cli, mailing).values()) == {("queued", 0, None, None)}
    assert sim.stats()["accepted"] == 0

    run_ok(cli, sim.url)
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}
    assert set(sim.accepted_counts().values()) == {1}


def test_wrong_gateway_path_404_from_simulator_stops_the_run(cli, sim) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli)
    result = run(cli, sim.url.removesuffix("/v1") + "/v2")
    assert result.exit_code == 1
    assert "404" in result.stderr and "gateway_url" in result.stderr
    assert set(message_rows(cli, mailing).values()) == {("queued", 0, None, None)}


@pytest.mark.slow
def test_a_mailing_that_keeps_failing_does_not_stop_other_mailings(cli) -> None:
    for phone in phones(10):
        add_user(cli, phone, tag="java-tips")
    for phone in phones(10, first=100):
        add_user(cli, phone)
    failing = create_mailing(cli, tag="java-tips", message="java")
    healthy = create_mailing(cli, message="python")
    busy_for_java = lambda seen: Reply(503, b'{"code": 503}') if b'"java"' in seen.body else OK  # noqa: E731
    with ScriptedGateway(busy_for_java) as gw:
        result = run(cli, gw.url, "--give-up-after", "3")
    assert result.exit_code in (0, 1)
    assert {m["status"] for m in stats(cli, healthy)} == {"sent"}
    assert {m["status"] for m in stats(cli, failing)} == {"not_sent"}
    assert len({s.msg_id for s in gw.seen() if b'"python"' in s.body}) == 10


# --- the gateway down ------------------------------------------------------------------------------


@pytest.mark.slow
def test_gateway_down_gives_up_with_exit_1_and_next_run_delivers(cli) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    started = time.monotonic()
    result = run(cli, closed_port_url(), "--give-up-after", "3")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert elapsed >= 3
    assert elapsed < 20
    assert "gateway" in result.stderr and "next run" in result.stderr
    rows = message_rows(cli, mailing)
    assert {status for status, *_ in rows.values()} == {"queued"}
    assert all(claimed is None and sent_at is None for _, _, claimed, sent_at in rows.values())
    assert {m["status"] for m in stats(cli, mailing)} == {"not_sent"}

    with SimulatorThread(SimulatorConfig(token=TOKEN)) as sim:
        run_ok(cli, sim.url)
        counts = sim.accepted_counts()
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}
    assert len(counts) == 2 and set(counts.values()) == {1}


@pytest.mark.slow
def test_gateway_that_never_answers_gives_up_within_bounded_time(cli) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli)
    hang = lambda seen: Reply(delay=30)  # noqa: E731
    with ScriptedGateway(hang) as gw:
        started = time.monotonic()
        result = run(cli, gw.url, "--give-up-after", "3", "--timeout", "1")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert 3 <= elapsed < 20
    assert "timed out" in result.stderr
    assert {status for status, *_ in message_rows(cli, mailing).values()} == {"queued"}


# --- the end of a mailing ----------------------------------------------------------------------------


def test_mailing_end_stops_sending_never_attempted_stay_not_sent_and_failed_ones_become_failed(cli) -> None:
    # A window open for Vladivostok and closed for Moscow keeps the Moscow message never attempted.
    add_user(cli, P1, tz=VLADIVOSTOK)  # gateway keeps failing for this one
    add_user(cli, P2, tz=MOSCOW)  # waits for its window: never attempted
    add_user(cli, P3, tz=VLADIVOSTOK)  # sent
    mailing = create_mailing(cli, end="+3d", window="09:00-18:00")
    end_at = end_at_of(cli, mailing)
    busy = lambda seen: Reply(503, b'{"code": 503}')  # noqa: E731
    with ScriptedGateway(by_phone({P1: busy})) as gw:
        # 00:30 UTC = 10:30 in Vladivostok (open), 03:30 in Moscow (closed)
        engine_run(gw.url, clock=clock_at(next_utc(0, 30, utcnow())), max_wait=0.1)
        before_end = len(gw.seen())
        rows = message_rows(cli, mailing)
        assert rows[P1][:2] == ("queued", 1)
        assert rows[P2][:2] == ("queued", 0)
        assert rows[P3][0] == "sent"

        # at end_at (07:00 UTC or not, the mailing is over): nothing is sent
        engine_run(gw.url, clock=clock_at(end_at))
        engine_run(gw.url, clock=clock_at(end_at + timedelta(hours=1)))
        assert len(gw.seen()) == before_end

    messages = by_phone_stats(cli, mailing)
    assert messages[P1]["status"] == "failed" and messages[P1]["attempts"] == 1
    assert messages[P2]["status"] == "not_sent" and messages[P2]["attempts"] == 0
    assert messages[P3]["status"] == "sent"
    assert {status for status, *_ in message_rows(cli, mailing).values()} == {"failed", "not_sent", "sent"}


def test_after_the_end_a_message_whose_attempts_all_failed_is_failed_even_without_another_run(cli) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli, end="+4s")
    end_at = end_at_of(cli, mailing)
    result = run(cli, closed_port_url(), "--give-up-after", "1")  # the gateway is down until the end
    assert result.exit_code == 1
    assert utcnow() < end_at, "the run took too long; the test proves nothing"
    status, attempts, *_ = message_rows(cli, mailing)[P1]
    assert status == "queued" and attempts >= 1
    time.sleep(max(0.0, (end_at - utcnow()).total_seconds()) + 0.5)

    (message,) = stats(cli, mailing)
    assert message["status"] == "failed"
    (listed,) = cli.json("mailings", "list")
    assert listed["message_count"] == {"not_sent": 0, "sent": 0, "failed": 1}


def test_run_at_end_at_sends_nothing(cli) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli, end="+2h")
    end_at = end_at_of(cli, mailing)
    with ScriptedGateway() as gw:
        engine_run(gw.url, clock=clock_at(end_at))
        engine_run(gw.url, clock=clock_at(end_at + timedelta(seconds=1)))
    assert gw.seen() == []
    assert {m["status"] for m in stats(cli, mailing)} <= {"not_sent"}  # no message, or one never sent


def test_run_just_before_end_at_sends(cli) -> None:
    add_user(cli, P1)
    mailing = create_mailing(cli, end="+2h")
    end_at = end_at_of(cli, mailing)
    with ScriptedGateway() as gw:
        engine_run(gw.url, clock=clock_at(end_at - timedelta(seconds=30)))
    assert len(gw.seen()) == 1
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}


@pytest.mark.slow
def test_mailing_reaching_its_end_during_a_run_stops_being_sent(cli) -> None:
    add_user(cli, P1)
    add_user(cli, P2)
    mailing = create_mailing(cli, end="+4s")
    end_at = end_at_of(cli, mailing)
    busy = lambda seen: Reply(503, b'{"code": 503}')  # noqa: E731
    with ScriptedGateway(busy) as gw:
        started = time.monotonic()
        result = run(cli, gw.url, "--give-up-after", "60")
        elapsed = time.monotonic() - started
    assert result.exit_code in (0, 1)
    assert elapsed < 15  # it did not keep retrying a mailing that is over
    assert gw.seen(), "the gateway was tried before the end"
    late = [s for s in gw.seen() if s.wall >= end_at + timedelta(seconds=0.2)]
    assert late == []
    messages = stats(cli, mailing)
    assert {m["status"] for m in messages} == {"failed"}
    assert all(m["attempts"] >= 1 for m in messages)


# --- sending windows ---------------------------------------------------------------------------------


def test_window_is_judged_in_each_users_own_zone(cli) -> None:
    add_user(cli, P1, tz=VLADIVOSTOK)
    add_user(cli, P2, tz=MOSCOW)
    mailing = create_mailing(cli, end="+3d", window="09:00-18:00")
    first = next_utc(0, 30, utcnow())  # 10:30 Vladivostok (open), 03:30 Moscow (closed)
    second = next_utc(7, 0, first)  # 10:00 Moscow (open)
    with ScriptedGateway() as gw:
        engine_run(gw.url, clock=clock_at(first))
        assert gw.phones() == [int(P1)]
        rows = message_rows(cli, mailing)
        assert rows[P1][0] == "sent"
        assert rows[P2][:3] == ("queued", 0, None)
        assert by_phone_stats(cli, mailing)[P2]["status"] == "not_sent"

        engine_run(gw.url, clock=clock_at(first + timedelta(hours=2)))  # 05:30 Moscow: still closed
        assert gw.phones() == [int(P1)]

        engine_run(gw.url, clock=clock_at(second))
        assert gw.phones() == [int(P1), int(P2)]
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}


def test_window_crossing_midnight_is_open_on_both_sides_of_midnight(cli) -> None:
    add_user(cli, P1, tz=VLADIVOSTOK)
    add_user(cli, P2, tz=MOSCOW)
    mailing = create_mailing(cli, end="+3d", window="22:00-06:00")
    # 15:30 UTC = 01:30 in Vladivostok (open, after midnight), 18:30 in Moscow (closed)
    first = next_utc(15, 30, utcnow())
    # 20:00 UTC = 23:00 in Moscow (open, before midnight)
    second = next_utc(20, 0, first)
    with ScriptedGateway() as gw:
        engine_run(gw.url, clock=clock_at(first))
        assert gw.phones() == [int(P1)]
        assert message_rows(cli, mailing)[P2][:3] == ("queued", 0, None)
        engine_run(gw.url, clock=clock_at(second))
        assert gw.phones() == [int(P1), int(P2)]
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}


def test_window_crossing_midnight_is_closed_at_its_end_and_during_the_day(cli) -> None:
    add_user(cli, P1, tz=VLADIVOSTOK)
    mailing = create_mailing(cli, end="+3d", window="22:00-06:00")
    base = next_utc(20, 0, utcnow())  # 06:00 in Vladivostok: the window's end, closed
    with ScriptedGateway() as gw:
        engine_run(gw.url, clock=clock_at(base), max_wait=0.1)
        engine_run(gw.url, clock=clock_at(base + timedelta(hours=6)), max_wait=0.1)  # 12:00: closed
        assert gw.seen() == []
        assert message_rows(cli, mailing)[P1][:2] == ("queued", 0)
        engine_run(gw.url, clock=clock_at(base + timedelta(hours=15, minutes=59)), max_wait=0.1)  # 21:59: closed
        assert gw.seen() == []
        engine_run(gw.url, clock=clock_at(base + timedelta(hours=16)), max_wait=0.1)  # 22:00: open
        assert gw.phones() == [int(P1)]


# --- cancel -----------------------------------------------------------------------------------------


def test_cancelled_mailing_sends_nothing_more_and_sent_stays_sent(cli) -> None:
    add_user(cli, P1)  # gateway keeps failing for this one
    add_user(cli, P2)  # sent before the cancel
    mailing = create_mailing(cli)
    other = create_mailing(cli, tag="java-tips")
    add_user(cli, P4, tag="java-tips")
    busy = lambda seen: Reply(503, b'{"code": 503}')  # noqa: E731
    with ScriptedGateway(by_phone({P1: busy})) as gw:
        engine_run(gw.url, max_wait=0.1)
        sent_before = by_phone_stats(cli, mailing)[P2]
        assert sent_before["status"] == "sent"
        seen_before = len(gw.seen())

        cli.ok("mailings", "cancel", str(mailing))
        add_user(cli, P3)  # joins the cancelled mailing's audience after the cancel
        add_user(cli, P5, tag="java-tips")  # the other mailing still goes on
        gw.respond = lambda seen: OK
        run_ok(cli, gw.url)
        after = gw.seen()[seen_before:]

    assert [s.phone for s in after] == [int(P5)]
    messages = by_phone_stats(cli, mailing)
    assert messages[P2] == sent_before
    assert messages[P1]["status"] == "failed"
    assert P3 not in messages
    assert {m["status"] for m in stats(cli, other)} == {"sent"}


@pytest.mark.slow
def test_cancel_during_a_run_stops_that_run_sending(cli, tmp_path) -> None:
    import_users(cli, tmp_path, phones(300))
    mailing = create_mailing(cli)
    with SimulatorThread(SimulatorConfig(token=TOKEN, latency=0.05)) as sim:
        runner = threading.Thread(target=engine_run, args=(sim.url,), kwargs={"concurrency": 2})
        runner.start()
        deadline = time.monotonic() + 20
        while sim.stats()["accepted"] < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        cli.ok("mailings", "cancel", str(mailing))
        at_cancel = sim.stats()["accepted"]
        cancelled = time.monotonic()
        runner.join(30)
        stopped_after = time.monotonic() - cancelled
        accepted = sim.stats()["accepted"]
    assert not runner.is_alive()
    assert stopped_after < 5
    assert accepted - at_cancel <= 2 * 40 + 2  # at most ~2 s of sending (40/s) after the cancel
    assert accepted < 300
    counts = {m["status"] for m in stats(cli, mailing)}
    assert counts <= {"sent", "not_sent"}
    sent = sum(1 for m in stats(cli, mailing) if m["status"] == "sent")
    assert sent == accepted  # what the gateway accepted is recorded as sent, even after the cancel


# --- dry run ----------------------------------------------------------------------------------------


def test_dry_run_sends_nothing_changes_nothing_and_counts_audience_and_would_send(cli, sim) -> None:
    add_user(cli, P1, tag="Python-tips")
    add_user(cli, P2)
    add_user(cli, P3)
    add_user(cli, OTHER_CODE)
    mailing = create_mailing(cli)
    before = cli.snapshot()
    result = run_ok(cli, sim.url, "--dry-run", "--json")
    assert cli.snapshot() == before
    assert sim.stats()["requests"] == 0
    plan = json.loads(result.stdout)
    (entry,) = plan["mailings"]
    assert entry["mailing_id"] == mailing
    assert entry["audience"] == 3
    assert entry["would_send"] == 3
    assert TOKEN not in result.stdout and TOKEN not in result.stderr

    run_ok(cli, sim.url)  # now everyone has it; one more user joins
    add_user(cli, P4)
    before = cli.snapshot()
    plan = json.loads(run_ok(cli, sim.url, "--dry-run", "--json").stdout)
    assert cli.snapshot() == before
    (entry,) = plan["mailings"]
    assert (entry["audience"], entry["would_send"]) == (4, 1)
    assert sim.stats()["requests"] == 3


def test_dry_run_works_without_a_gateway_url(cli) -> None:
    add_user(cli, P1)
    create_mailing(cli)
    before = cli.snapshot()
    result = run(cli, None, "--dry-run", "--json", token=None)
    assert result.exit_code == 0, result.stderr
    assert cli.snapshot() == before
    assert json.loads(result.stdout)["mailings"][0]["would_send"] == 1


def test_dry_run_would_send_counts_only_what_a_run_would_send_now(cli, sim) -> None:
    """A window that is closed now in the user's zone: a run sends nothing now, so the dry run says 0."""
    add_user(cli, P1, tz=MOSCOW)
    local = datetime.now(ZoneInfo(MOSCOW))
    window = f"{(local + timedelta(hours=2)):%H:%M}-{(local + timedelta(hours=3)):%H:%M}"
    create_mailing(cli, end="+1h", window=window)
    plan = json.loads(run_ok(cli, sim.url, "--dry-run", "--json").stdout)
    run_ok(cli, sim.url)
    assert sim.stats()["requests"] == 0  # the run waits for the window
    (entry,) = plan["mailings"]
    assert entry["audience"] == 1
    assert entry["would_send"] == 0


# --- the attempt log ---------------------------------------------------------------------------------


def test_log_writes_one_json_line_per_attempt(cli, tmp_path) -> None:
    add_user(cli, P1)  # 503 once, then sent
    add_user(cli, P2)  # 400: failed
    add_user(cli, P3)  # sent at once
    mailing = create_mailing(cli)
    script = {
        P1: lambda seen: Reply(503, b'{"code": 503}') if seen.attempt == 1 else OK,
        P2: lambda seen: Reply(400, b'{"code": 400, "message": "bad phone"}'),
    }
    log = tmp_path / "attempts.jsonl"
    with ScriptedGateway(by_phone(script)) as gw:
        run_ok(cli, gw.url, "--log", str(log))
    ids = {p: m["id"] for p, m in by_phone_stats(cli, mailing).items()}
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(gw.seen()) == 4
    keys = {"mailing_id", "message_id", "phone", "attempt", "outcome", "http_status", "latency_ms", "error"}
    for line in lines:
        assert keys <= set(line)
        assert line["mailing_id"] == mailing
        assert line["message_id"] == ids[str(line["phone"])]
        assert isinstance(line["latency_ms"], (int, float)) and line["latency_ms"] >= 0
    got = sorted((str(l["phone"]), l["attempt"], l["outcome"], l["http_status"]) for l in lines)
    assert got == [
        (P1, 1, "transient", 503),
        (P1, 2, "sent", 200),
        (P2, 1, "permanent", 400),
        (P3, 1, "sent", 200),
    ]
    errors = {(str(l["phone"]), l["attempt"]): l["error"] for l in lines}
    assert errors[(P3, 1)] is None and errors[(P1, 2)] is None
    assert "503" in errors[(P1, 1)] and "400" in errors[(P2, 1)]


# --- rate, settings, summary --------------------------------------------------------------------------


def test_rate_limits_messages_per_second(cli, tmp_path) -> None:
    import_users(cli, tmp_path, phones(40))
    mailing = create_mailing(cli)
    with ScriptedGateway() as gw:
        started = time.monotonic()
        run_ok(cli, gw.url, "--rate", "20")
        elapsed = time.monotonic() - started
        seen = gw.seen()
    assert len(seen) == 40
    assert seen[-1].at - seen[0].at >= 1.5
    assert elapsed < 15
    # never much more than 20 in any one second
    arrivals = sorted(s.at for s in seen)
    assert max(sum(1 for t in arrivals if a <= t < a + 1.0) for a in arrivals) <= 24
    assert {m["status"] for m in stats(cli, mailing)} == {"sent"}


def test_run_without_gateway_url_exits_2_naming_gateway_url_and_changes_nothing(cli) -> None:
    add_user(cli, P1)
    create_mailing(cli)
    before = cli.snapshot()
    result = run(cli, None, token=None)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "gateway_url" in lines[0]
    assert "Traceback" not in result.stderr
    assert cli.snapshot() == before


def test_json_summary_reports_sent_per_mailing(cli, sim) -> None:
    for phone in (P1, P2, P3):
        add_user(cli, phone)
    add_user(cli, P4, tag="java-tips")
    add_user(cli, P5, tag="java-tips")
    first = create_mailing(cli)
    second = create_mailing(cli, tag="java-tips")
    result = run_ok(cli, sim.url, "--json")
    summary = json.loads(result.stdout)
    assert summary["sent"] == 5
    per_mailing = {m["mailing_id"]: m for m in summary["mailings"]}
    assert set(per_mailing) == {first, second}
    assert per_mailing[first]["sent"] == 3 and per_mailing[second]["sent"] == 2
    assert per_mailing[first]["failed"] == 0
    assert per_mailing[first]["message_count"] == {"not_sent": 0, "sent": 3, "failed": 0}
    assert per_mailing[second]["message_count"] == {"not_sent": 0, "sent": 2, "failed": 0}


def test_run_with_nothing_due_exits_0_and_sends_nothing(cli, sim) -> None:
    add_user(cli, P1)
    create_mailing(cli, start="+1h", end="+2h")  # not started yet
    result = run_ok(cli, sim.url, "--json")
    assert json.loads(result.stdout)["sent"] == 0
    assert sim.stats()["requests"] == 0

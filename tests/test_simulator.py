"""The gateway simulator, exercised over real HTTP on 127.0.0.1 with httpx."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailcli.simulator import SimulatorConfig, SimulatorThread

PHONE = 79114048095
TOKEN = "s3cret"
EMPTY_STATS = {
    "requests": 0,
    "accepted": 0,
    "duplicates": 0,
    "failures": 0,
    "malformed": 0,
    "rejected": 0,
    "unauthorized": 0,
}


def body(msg_id: int, phone: object = PHONE, text: object = "Hello") -> dict[str, object]:
    return {"id": msg_id, "phone": phone, "text": text}


def client_for(sim: SimulatorThread) -> httpx.Client:
    # trust_env=False: never route 127.0.0.1 through a proxy from the environment
    return httpx.Client(base_url=sim.url, trust_env=False, timeout=5.0)


def send(client: httpx.Client, msg_id: int, **fields: object) -> httpx.Response:
    return client.post(f"/send/{msg_id}", json=body(msg_id, **fields))


@pytest.fixture(scope="module")
def shared() -> Iterator[SimulatorThread]:
    with SimulatorThread() as sim:
        yield sim


@pytest.fixture
def sim(shared: SimulatorThread) -> SimulatorThread:
    shared.reset()
    return shared


@pytest.fixture
def client(sim: SimulatorThread) -> Iterator[httpx.Client]:
    with client_for(sim) as c:
        yield c


# --- the contract -------------------------------------------------------------


def test_success_answer_and_bookkeeping(sim: SimulatorThread, client: httpx.Client) -> None:
    response = client.post("/send/17", json=body(17), headers={"Authorization": "Bearer anything"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"code": 0, "message": "OK"}
    assert sim.stats() == EMPTY_STATS | {"requests": 1, "accepted": 1}
    assert sim.accepted_counts() == {17: 1}
    assert sim.accepted_messages() == {
        17: {"id": 17, "phone": PHONE, "text": "Hello", "headers": {"Authorization": "Bearer anything"}}
    }


def test_url_is_local_v1_base(sim: SimulatorThread) -> None:
    assert sim.url.startswith("http://127.0.0.1:")
    assert sim.url.endswith("/v1")


@pytest.mark.parametrize(
    ("path_id", "payload", "reason"),
    [
        ("5", body(6), "id 6 does not match msgId 5"),
        ("abc", body(1), "msgId must be an integer"),
        ("1.5", body(1), "msgId must be an integer"),
        ("5", {"phone": PHONE, "text": "Hi"}, "id is required"),
        ("5", body(5) | {"id": "5"}, "id must be an integer"),
        ("1", body(1) | {"id": True}, "id must be an integer"),
        ("5", body(5, phone="79114048095"), "phone"),
        ("5", body(5, phone=89114048095), "phone"),
        ("5", body(5, phone=7911404809), "phone"),
        ("5", body(5, phone=791140480951), "phone"),
        ("5", body(5, phone=True), "phone"),
        ("5", body(5, phone=79114048095.0), "phone"),
        ("5", {"id": 5, "text": "Hi"}, "phone"),
        ("5", body(5, text=5), "text must be a string"),
        ("5", {"id": 5, "phone": PHONE}, "text must be a string"),
        ("5", [body(5)], "body must be a JSON object"),
    ],
)
def test_invalid_requests_get_400(
    sim: SimulatorThread, client: httpx.Client, path_id: str, payload: object, reason: str
) -> None:
    response = client.post(f"/send/{path_id}", json=payload)

    assert response.status_code == 400
    assert response.json()["code"] == 400
    assert reason in response.json()["message"]
    assert sim.stats() == EMPTY_STATS | {"requests": 1, "rejected": 1}
    assert sim.accepted_counts() == {}


@pytest.mark.parametrize("content", [b"not json", b"", b"\xff\xfe{", b'{"id": 1,'])
def test_non_json_body_gets_400(sim: SimulatorThread, client: httpx.Client, content: bytes) -> None:
    response = client.post("/send/1", content=content, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "body is not valid JSON"}
    assert sim.stats()["rejected"] == 1


def test_repeated_msg_id_is_ok_but_counted_as_duplicate(sim: SimulatorThread, client: httpx.Client) -> None:
    first = send(client, 7)
    second = send(client, 7, text="changed")

    assert first.json() == second.json() == {"code": 0, "message": "OK"}
    assert sim.stats() == EMPTY_STATS | {"requests": 2, "accepted": 1, "duplicates": 1}
    assert sim.accepted_counts() == {7: 2}
    assert sim.accepted_messages()[7]["text"] == "Hello"


def test_accessors_return_copies(sim: SimulatorThread, client: httpx.Client) -> None:
    send(client, 1)
    sim.accepted_messages()[1]["headers"]["Authorization"] = "tampered"
    sim.accepted_counts()[1] = 99
    sim.stats()["accepted"] = 99

    assert sim.accepted_messages()[1]["headers"] == {"Authorization": None}
    assert sim.accepted_counts() == {1: 1}
    assert sim.stats()["accepted"] == 1


# --- auth ---------------------------------------------------------------------


def test_token_is_required_when_configured() -> None:
    with SimulatorThread(SimulatorConfig(token=TOKEN)) as sim, client_for(sim) as client:
        missing = client.post("/send/1", json=body(1))
        wrong = client.post("/send/1", json=body(1), headers={"Authorization": "Bearer nope"})
        no_scheme = client.post("/send/1", json=body(1), headers={"Authorization": TOKEN})
        # auth is checked before the body, so even an invalid body gets 401
        invalid = client.post("/send/1", content=b"junk")
        right = client.post("/send/1", json=body(1), headers={"Authorization": f"Bearer {TOKEN}"})

        for response in (missing, wrong, no_scheme, invalid):
            assert response.status_code == 401
            assert response.json() == {"code": 401, "message": "unauthorized"}
        assert right.status_code == 200
        assert sim.stats() == EMPTY_STATS | {"requests": 5, "accepted": 1, "unauthorized": 4}
        assert sim.accepted_messages()[1]["headers"] == {"Authorization": f"Bearer {TOKEN}"}


# --- injected misbehaviour --------------------------------------------------------


def test_failure_injection_with_retry_after() -> None:
    config = SimulatorConfig(failure_rate=1.0, failure_status=503, retry_after=2)
    with SimulatorThread(config) as sim, client_for(sim) as client:
        response = send(client, 3)

        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.json() == {"code": 503, "message": "simulated failure"}
        assert sim.stats() == EMPTY_STATS | {"requests": 1, "failures": 1}
        assert sim.accepted_counts() == {}


def test_fractional_retry_after_and_no_header_by_default() -> None:
    with SimulatorThread(SimulatorConfig(failure_rate=1.0, retry_after=1.5)) as sim, client_for(sim) as client:
        assert send(client, 1).headers["Retry-After"] == "1.5"
    with SimulatorThread(SimulatorConfig(failure_rate=1.0)) as sim, client_for(sim) as client:
        response = send(client, 1)
        assert response.status_code == 500
        assert "Retry-After" not in response.headers


def test_malformed_answer_is_200_without_json_and_not_accepted() -> None:
    with SimulatorThread(SimulatorConfig(malformed_rate=1.0)) as sim, client_for(sim) as client:
        response = send(client, 4)

        assert response.status_code == 200
        assert response.text.startswith("<html>")
        with pytest.raises(json.JSONDecodeError):
            response.json()
        assert sim.stats() == EMPTY_STATS | {"requests": 1, "malformed": 1}
        assert sim.accepted_counts() == {}


def test_rejected_phone_gets_400_before_failure_injection() -> None:
    config = SimulatorConfig(reject_phones=frozenset({79990000000}), failure_rate=1.0)
    with SimulatorThread(config) as sim, client_for(sim) as client:
        response = send(client, 1, phone=79990000000)

        assert response.status_code == 400
        assert response.json() == {"code": 400, "message": "phone 79990000000 is rejected"}
        assert sim.stats() == EMPTY_STATS | {"requests": 1, "rejected": 1}


def test_latency_is_observed() -> None:
    with SimulatorThread(SimulatorConfig(latency=0.2)) as sim, client_for(sim) as client:
        started = time.perf_counter()
        response = send(client, 1)
        elapsed = time.perf_counter() - started

        assert response.status_code == 200
        assert elapsed >= 0.2


def test_seeded_failure_rate_is_roughly_honoured_and_reproducible() -> None:
    def failures_over_300() -> tuple[int, dict[str, int]]:
        config = SimulatorConfig(failure_rate=0.3, seed=1234)
        with SimulatorThread(config) as sim, client_for(sim) as client:
            statuses = [send(client, msg_id).status_code for msg_id in range(300)]
            return statuses.count(500), sim.stats()

    failures, stats = failures_over_300()

    assert 40 <= failures <= 140
    assert stats == EMPTY_STATS | {"requests": 300, "failures": failures, "accepted": 300 - failures}
    assert failures_over_300()[0] == failures


def test_quiet_false_prints_one_line_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatorThread(SimulatorConfig(quiet=False)) as sim, client_for(sim) as client:
        send(client, 17)
        send(client, 18, text="multi\nline  text")
        send(client, 19, phone=1)

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"200 #17 -> {PHONE}: Hello"
    assert lines[1] == f"200 #18 -> {PHONE}: multi line text"
    assert lines[2].startswith("400 #19 phone")


# --- record file ----------------------------------------------------------------


def test_record_path_gets_one_line_per_first_acceptance(tmp_path: Path) -> None:
    record = tmp_path / "out" / "accepted.jsonl"
    with SimulatorThread(SimulatorConfig(record_path=record)) as sim, client_for(sim) as client:
        send(client, 1, text="Привет")
        send(client, 2)
        send(client, 1)  # duplicate: not recorded again
        send(client, 3, phone=5)  # invalid: not recorded

    entries = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    assert [(e["id"], e["phone"], e["text"]) for e in entries] == [(1, PHONE, "Привет"), (2, PHONE, "Hello")]
    assert all(set(e) == {"id", "phone", "text", "at"} for e in entries)

    with SimulatorThread(SimulatorConfig(record_path=record)) as sim, client_for(sim) as client:
        send(client, 9)
    assert len(record.read_text(encoding="utf-8").splitlines()) == 3  # appended


# --- out-of-process endpoints -----------------------------------------------------


def test_stats_accepted_and_reset_endpoints(sim: SimulatorThread, client: httpx.Client) -> None:
    send(client, 5)
    send(client, 5)
    send(client, 6)
    send(client, 7, phone=1)

    assert client.get("/stats").json() == EMPTY_STATS | {
        "requests": 4,
        "accepted": 2,
        "duplicates": 1,
        "rejected": 1,
    }
    assert client.get("/accepted").json() == {"5": 2, "6": 1}

    reset = client.post("/reset")
    assert reset.status_code == 200
    assert client.get("/stats").json() == EMPTY_STATS
    assert client.get("/accepted").json() == {}
    assert sim.accepted_messages() == {}


# --- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"failure_rate": -0.1}, "failure_rate"),
        ({"malformed_rate": 2}, "malformed_rate"),
        ({"malformed_rate": float("nan")}, "malformed_rate"),
        ({"latency": -1}, "latency"),
        ({"jitter": -0.5}, "jitter"),
        ({"retry_after": -1}, "retry_after"),
        ({"failure_status": 200}, "failure_status"),
        ({"failure_status": 600}, "failure_status"),
        ({"port": 70000}, "port"),
    ],
)
def test_invalid_config_is_rejected(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SimulatorConfig(**kwargs)  # type: ignore[arg-type]


def test_config_defaults_are_valid_and_reject_phones_is_frozen() -> None:
    config = SimulatorConfig(reject_phones={79990000000})  # type: ignore[arg-type]
    assert config.reject_phones == frozenset({79990000000})
    assert SimulatorConfig().host == "127.0.0.1"


def test_port_in_use_is_reported_on_enter(shared: SimulatorThread) -> None:
    taken = SimulatorConfig(port=httpx.URL(shared.url).port or 0)
    with pytest.raises(OSError), SimulatorThread(taken):
        pass


# --- serve() --------------------------------------------------------------------

SERVE_SCRIPT = textwrap.dedent(
    """
    import json
    from mailcli.simulator import SimulatorConfig, serve

    stats = serve(SimulatorConfig(), on_ready=lambda url: print(url, flush=True))
    print(json.dumps(stats), flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_until_signal_and_returns_stats(signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else url
        with httpx.Client(base_url=url, trust_env=False, timeout=5.0) as client:
            assert send(client, 1).status_code == 200

        started = time.perf_counter()
        process.send_signal(signum)
        out, err = process.communicate(timeout=5)
        assert process.returncode == 0, err
        assert time.perf_counter() - started < 2
        assert json.loads(out) == EMPTY_STATS | {"requests": 1, "accepted": 1}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

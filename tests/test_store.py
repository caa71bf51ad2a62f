"""The delivery engine's database side: claims, outcomes, finalisation (no HTTP)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from mailcli.config import load_settings
from mailcli.db import open_database
from mailcli.delivery.store import DeliveryStore, Outcome
from mailcli.importer import import_users
from mailcli.mailings import cancel_mailing, create_mailing, list_mailings
from mailcli.models import messages

UTC = UTC
LEASE = timedelta(seconds=60)


@pytest.fixture
def db(tmp_path):
    database = open_database(load_settings(env={"MAILCLI_HOME": str(tmp_path / "home"), "MAILCLI_TZ": "UTC"}))
    yield database
    database.close()


def _mailing(db, users: int, now: datetime) -> int:
    rows = "".join(f"7911{i:07d},python-tips,UTC\n" for i in range(users))
    import io

    import_users(db, io.BytesIO(f"phone_number,tag,time_zone\n{rows}".encode()), name="u.csv", default_tz="UTC", now=now)
    return create_mailing(db, message="hi", tag="python-tips", operator_code="911", start="now", end="+1h", tz="UTC",
                          now=now)["id"]


def _statuses(db) -> dict[str, int]:
    with db.read() as conn:
        return dict(conn.execute(sa.select(messages.c.status, sa.func.count()).group_by(messages.c.status)).all())


def test_claim_sql_carries_over_to_postgresql_with_skip_locked(db):
    store = DeliveryStore(db, "w", LEASE)
    now = datetime.now(UTC)
    sql = str(store.claim_statement(1, 10, now, now + LEASE).compile(dialect=postgresql.dialect()))
    assert "FOR UPDATE SKIP LOCKED" in sql and "RETURNING" in sql


def test_concurrent_claims_never_overlap(db):
    now = datetime.now(UTC)
    mailing = _mailing(db, 600, now)
    DeliveryStore(db, "setup", LEASE).refresh(now)
    taken: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        store = DeliveryStore(db, name, LEASE)
        mine = taken.setdefault(name, [])
        while rows := store.claim(mailing, 25, now):
            mine.extend(r.id for r in rows)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in taken.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 600


def test_an_expired_claim_is_taken_over_and_a_live_one_is_not(db):
    now = datetime.now(UTC)
    mailing = _mailing(db, 3, now)
    first, second = DeliveryStore(db, "dead", LEASE), DeliveryStore(db, "alive", LEASE)
    first.refresh(now)
    assert len(first.claim(mailing, 10, now)) == 3
    assert second.claim(mailing, 10, now + LEASE - timedelta(seconds=1)) == []
    assert len(second.claim(mailing, 10, now + LEASE)) == 3


def test_release_all_gives_back_claims_untouched(db):
    now = datetime.now(UTC)
    mailing = _mailing(db, 5, now)
    store = DeliveryStore(db, "w", LEASE)
    store.refresh(now)
    store.claim(mailing, 10, now)
    assert store.release_all(now) == 5
    with db.read() as conn:
        rows = conn.execute(sa.select(messages.c.claimed_by, messages.c.attempts, messages.c.status)).all()
    assert set(rows) == {(None, 0, "queued")}
    assert len(DeliveryStore(db, "other", LEASE).claim(mailing, 10, now)) == 5


def test_a_success_is_recorded_even_after_the_mailing_was_cancelled(db):
    now = datetime.now(UTC)
    mailing = _mailing(db, 2, now)
    store = DeliveryStore(db, "w", LEASE)
    store.refresh(now)
    a, b = store.claim(mailing, 10, now)
    cancel_mailing(db, mailing, tz="UTC", now=now)
    store.record([Outcome(a.id, "sent", now), Outcome(b.id, "retry", now, now, "HTTP 503")])
    # what was sent stays sent; an attempt that failed after the cancel makes its message failed
    assert _statuses(db) == {"sent": 1, "failed": 1}


def test_a_mailing_that_ended_is_finalised_attempted_failed_never_attempted_not_sent(db):
    now = datetime.now(UTC)
    mailing = _mailing(db, 3, now)
    store = DeliveryStore(db, "w", LEASE)
    store.refresh(now)
    a, b, c = store.claim(mailing, 10, now)
    store.record([Outcome(a.id, "sent", now), Outcome(b.id, "retry", now, now, "timed out"),
                  Outcome(c.id, "release", now)])
    later = now + timedelta(hours=2)
    assert list_mailings(db, tz="UTC", now=later)[0]["message_count"] == {"not_sent": 1, "sent": 1, "failed": 1}
    result = store.refresh(later)
    assert result.finished == [mailing] and result.due == []
    assert _statuses(db) == {"sent": 1, "failed": 1, "not_sent": 1}


def test_the_kept_counts_always_equal_the_messages(db):
    """Every way a message is created or changes status (materialise, claim, each outcome,
    cancel, end, a user removed or re-tagged, rejoining) keeps mailing_counts exact."""
    import random

    from mailcli.models import mailing_counts
    from mailcli.users import remove_user, update_user

    rng = random.Random(7)
    now = datetime.now(UTC)
    first = _mailing(db, 60, now)
    second = create_mailing(db, message="hey", tag="python-tips", operator_code="911", start="now", end="+2h",
                            tz="UTC", now=now)["id"]
    store = DeliveryStore(db, "w", LEASE)

    def assert_counts_exact() -> None:
        with db.read() as conn:
            kept = {(m, s): n for m, s, n in conn.execute(sa.select(mailing_counts)) if n}
            truth = dict(((m, s), n) for m, s, n in conn.execute(
                sa.select(messages.c.mailing_id, messages.c.status, sa.func.count())
                .group_by(messages.c.mailing_id, messages.c.status)))
        assert kept == truth

    for step in range(12):
        moment = now + timedelta(seconds=step)
        store.refresh(moment)
        for mailing in (first, second):
            claimed = store.claim(mailing, 10, moment)
            store.record([Outcome(c.id, rng.choice(["sent", "retry", "failed", "release"]), moment, moment, "x")
                          for c in claimed])
        phone = f"7911{rng.randrange(60):07d}"
        try:
            if step % 3 == 0:
                remove_user(db, phone, now=moment)
            elif step % 3 == 1:
                update_user(db, phone, tag=rng.choice(["java-tips", "python-tips"]), now=moment)
        except Exception:  # noqa: BLE001 - the phone may be removed already
            pass
        assert_counts_exact()
    cancel_mailing(db, second, tz="UTC", now=now)
    store.refresh(now + timedelta(hours=3))  # the first mailing ends and is finalised
    assert_counts_exact()

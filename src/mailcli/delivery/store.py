"""The delivery engine's database side: refresh, claim, record, release.

All of it is plain SQLAlchemy Core that runs on SQLite and PostgreSQL alike.
Messages are claimed before they are sent: one ``UPDATE ... WHERE id IN
(SELECT ... LIMIT n FOR UPDATE SKIP LOCKED) RETURNING`` per batch. On SQLite the
statement runs under the write lock (``BEGIN IMMEDIATE``), so two processes can
never claim the same message; on PostgreSQL ``SKIP LOCKED`` gives the same
guarantee without blocking. A claim sets the claim owner and expiry and moves
``next_attempt_at`` to the expiry: if the run dies, the message becomes due
again when the claim expires and another run takes it over.

Outcomes are recorded in batches, one transaction per batch, with executemany.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mailcli.audience import close_queued, materialize, users_rev
from mailcli.db import Database
from mailcli.mailings import due_where, message_counts, unfinalised_ended_where
from mailcli.models import FAILED, NOT_SENT, QUEUED, SENT, mailings, messages, users
from mailcli.shapes import empty_counts


@dataclass(slots=True, frozen=True)
class DueMailing:
    id: int
    message: str
    start_at: datetime
    end_at: datetime
    window_start: int | None
    window_end: int | None


@dataclass(slots=True, frozen=True)
class Claimed:
    """A message this run holds: it may send it until ``lease_until``."""

    id: int
    mailing_id: int
    phone: str
    time_zone: str
    attempts: int  # attempts before this one
    lease_until: datetime


@dataclass(slots=True, frozen=True)
class Outcome:
    """One row to record: what happened to a claimed message."""

    message_id: int
    kind: str  # "sent", "retry", "failed", "defer" (window closed) or "release" (untouched)
    at: datetime
    next_attempt_at: datetime | None = None
    error: str | None = None


@dataclass(slots=True)
class RefreshResult:
    due: list[DueMailing]
    finished: list[int]  # mailings that ended (and were finalised) in this refresh
    added: int  # messages materialised


class DeliveryStore:
    """Database operations of one run (``worker`` names it in claims)."""

    def __init__(self, db: Database, worker: str, lease: timedelta):
        self.db = db
        self.worker = worker
        self.lease = lease
        self._record_statements = self._build_record_statements()

    # --- mailings ------------------------------------------------------------

    def refresh(self, now: datetime) -> RefreshResult:
        """Finalise ended mailings, materialise the audience of due ones, return the due ones."""
        with self.db.write() as conn:
            ended = conn.execute(
                sa.select(mailings.c.id).where(*unfinalised_ended_where(now))
            ).scalars().all()
            for mailing_id in ended:
                close_queued(conn, messages.c.mailing_id == mailing_id)
            if ended:
                conn.execute(sa.update(mailings).where(mailings.c.id.in_(ended)).values(finished_at=now))
            rows = conn.execute(
                sa.select(mailings)
                .where(*due_where(now))
                .order_by(mailings.c.id)
            ).mappings().all()
            rev = users_rev(conn) if rows else 0
            added = sum(materialize(conn, row, now) for row in rows if row["audience_rev"] < rev)
        due = [
            DueMailing(r["id"], r["message"], r["start_at"], r["end_at"], r["window_start"], r["window_end"])
            for r in rows
        ]
        return RefreshResult(due, list(ended), added)

    def cancelled(self, mailing_ids: Sequence[int]) -> set[int]:
        """Which of these mailings were cancelled (their end the engine knows already)."""
        if not mailing_ids:
            return set()
        with self.db.read() as conn:
            return set(
                conn.execute(
                    sa.select(mailings.c.id).where(mailings.c.id.in_(mailing_ids), mailings.c.cancelled_at.is_not(None))
                ).scalars()
            )

    # --- claims --------------------------------------------------------------

    def claim_statement(self, mailing_id: int, limit: int, now: datetime, lease_until: datetime) -> sa.Update:
        """``UPDATE .. WHERE id IN (SELECT .. LIMIT n FOR UPDATE SKIP LOCKED) RETURNING ..``."""
        due = (
            sa.select(messages.c.id)
            .where(
                messages.c.mailing_id == mailing_id,
                messages.c.status == QUEUED,
                messages.c.next_attempt_at <= now,
            )
            .order_by(messages.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (
            sa.update(messages)
            .where(messages.c.id.in_(due.scalar_subquery()))
            .values(claimed_by=self.worker, claim_expires_at=lease_until, next_attempt_at=lease_until)
            .returning(messages.c.id, messages.c.user_id, messages.c.attempts)
        )

    def claim(self, mailing_id: int, limit: int, now: datetime) -> list[Claimed]:
        """Take up to ``limit`` due messages of a mailing for this run."""
        lease_until = now + self.lease
        with self.db.write() as conn:
            taken = conn.execute(self.claim_statement(mailing_id, limit, now, lease_until)).all()
            if not taken:
                return []
            people = {
                row.id: row
                for row in conn.execute(
                    sa.select(users.c.id, users.c.phone_number, users.c.time_zone).where(
                        users.c.id.in_({t.user_id for t in taken})
                    )
                )
            }
        taken.sort(key=lambda t: t.id)
        return [
            Claimed(t.id, mailing_id, people[t.user_id].phone_number, people[t.user_id].time_zone, t.attempts, lease_until)
            for t in taken
        ]

    # --- outcomes ------------------------------------------------------------

    def _build_record_statements(self) -> dict[str, sa.Update]:
        m = messages
        mid = sa.bindparam("mid")
        mine = sa.or_(m.c.claimed_by == self.worker, m.c.claimed_by.is_(None))
        unclaim = {"claimed_by": None, "claim_expires_at": None}
        open_ = sa.or_(m.c.status == QUEUED, m.c.status == NOT_SENT)  # no IN: executemany cannot expand it
        # Deferred to the window's opening or released untouched: the claim ends, nothing else changes.
        give_back = (
            sa.update(m)
            .where(m.c.id == mid, m.c.claimed_by == self.worker)
            .values(next_attempt_at=sa.bindparam("next"), **unclaim)
        )
        return {
            # A success is the truth whatever happened meanwhile (cancel, end, removal).
            SENT: sa.update(m)
            .where(m.c.id == mid, m.c.status != SENT)
            .values(status=SENT, sent_at=sa.bindparam("at"), attempts=m.c.attempts + 1, last_error=None, **unclaim),
            "retry": sa.update(m)
            .where(m.c.id == mid, open_, mine)
            .values(
                # Closed meanwhile (mailing ended or cancelled): its attempts all failed.
                status=sa.case((m.c.status == NOT_SENT, FAILED), else_=m.c.status),
                attempts=m.c.attempts + 1,
                next_attempt_at=sa.bindparam("next"),
                last_error=sa.bindparam("error"),
                **unclaim,
            ),
            FAILED: sa.update(m)
            .where(m.c.id == mid, open_)
            .values(status=FAILED, attempts=m.c.attempts + 1, last_error=sa.bindparam("error"), **unclaim),
            "defer": give_back,
            "release": give_back,
        }

    def record(self, outcomes: Iterable[Outcome]) -> None:
        """Write a batch of outcomes in one transaction."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for o in outcomes:
            groups.setdefault(o.kind, []).append(
                {"mid": o.message_id, "at": o.at, "next": o.next_attempt_at or o.at, "error": _clip(o.error)}
            )
        if not groups:
            return
        with self.db.write() as conn:
            for kind, params in groups.items():
                conn.execute(self._record_statements[kind], params)

    def release_all(self, now: datetime) -> int:
        """Give back every claim this run still holds (a clean stop)."""
        with self.db.write() as conn:
            return conn.execute(
                sa.update(messages)
                .where(messages.c.claimed_by == self.worker, messages.c.status == QUEUED)
                .values(next_attempt_at=now, claimed_by=None, claim_expires_at=None)
            ).rowcount

    # --- what is left ----------------------------------------------------------

    def next_due(self, mailing_ids: Sequence[int]) -> datetime | None:
        """When the earliest queued message of these mailings becomes due.

        A claimed message is due when its claim expires: a run waits (within its
        limit) for the claims of a run that died, and not for those of a live run,
        which keeps renewing them by sending.
        """
        if not mailing_ids:
            return None
        with self.db.read() as conn:
            return conn.execute(
                sa.select(sa.func.min(messages.c.next_attempt_at)).where(
                    messages.c.mailing_id.in_(mailing_ids), messages.c.status == QUEUED
                )
            ).scalar()

    def queued_count(self, mailing_ids: Sequence[int], now: datetime) -> int:
        """Messages of these mailings waiting and due now (for the progress bar)."""
        if not mailing_ids:
            return 0
        with self.db.read() as conn:
            return conn.execute(
                sa.select(sa.func.count()).where(
                    messages.c.mailing_id.in_(mailing_ids),
                    messages.c.status == QUEUED,
                    messages.c.next_attempt_at <= now,
                )
            ).scalar_one()

    def counts(self, mailing_ids: Sequence[int], now: datetime) -> dict[int, dict[str, int]]:
        with self.db.read() as conn:
            counts = message_counts(conn, now)
        return {mid: counts.get(mid, empty_counts()) for mid in mailing_ids}


def _clip(error: str | None) -> str | None:
    return error if error is None or len(error) <= 500 else error[:499] + "…"

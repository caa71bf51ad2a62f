"""Mailings: create, list, show, stats, cancel (the core behind ``mailcli mailings``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcli.audience import audience_where, close_queued
from mailcli.db import Database
from mailcli.errors import invalid
from mailcli.models import FAILED, NOT_SENT, PUBLIC_STATUSES, QUEUED, SENT, mailing_counts, mailings, messages, users
from mailcli.shapes import add_count, empty_counts, mailing_shape, message_shape
from mailcli.validation import (
    parse_time,
    parse_window,
    tag_key,
    validate_message,
    validate_operator_code,
    validate_schedule,
    validate_tag,
)

STREAM_BATCH = 2000
BODY_KEYS = ("filter", "message", "start_at", "end_at", "window")
FILTER_KEYS = ("operator_code", "tag")


def create_mailing(
    db: Database,
    *,
    message: str,
    tag: str,
    operator_code: str,
    start: str,
    end: str,
    window: str | None = None,
    tz: str,
    now: datetime,
    relative_times: bool = True,
) -> dict[str, Any]:
    """Schedule a mailing. Times are read in the operator's zone ``tz``."""
    message = validate_message(message)
    tag = validate_tag(tag, field="filter.tag")
    operator_code = validate_operator_code(operator_code, field="filter.operator_code")
    start_at = parse_time(start, tz, now, field="start_at", relative=relative_times)
    end_at = parse_time(end, tz, now, field="end_at", relative=relative_times)
    validate_schedule(start_at, end_at, now)
    window_minutes = parse_window(window)
    row = {
        "message": message,
        "tag": tag,
        "tag_key": tag_key(tag),
        "operator_code": operator_code,
        "start_at": start_at,
        "end_at": end_at,
        "window_start": window_minutes[0] if window_minutes else None,
        "window_end": window_minutes[1] if window_minutes else None,
        "created_at": now,
        "cancelled_at": None,
        "finished_at": None,
        "audience_rev": -1,
    }
    with db.write() as conn:
        row["id"] = conn.execute(sa.insert(mailings).values(row).returning(mailings.c.id)).scalar_one()
    return mailing_shape(row, empty_counts(), tz, now)


def create_from_body(db: Database, body: object, *, tz: str, now: datetime) -> dict[str, Any]:
    """Create a mailing from the JSON body of SPEC section 1 (``--input``)."""
    if not isinstance(body, Mapping):
        raise invalid("input", "must be a JSON object with filter, message, start_at and end_at")
    unknown = sorted(set(body) - set(BODY_KEYS))
    if unknown:
        raise invalid(unknown[0], f"unknown field (expected: {', '.join(BODY_KEYS)})")
    filt = body.get("filter")
    if not isinstance(filt, Mapping):
        raise invalid("filter", "is required: an object with operator_code and tag")
    unknown = sorted(set(filt) - set(FILTER_KEYS))
    if unknown:
        raise invalid(f"filter.{unknown[0]}", f"unknown field (expected: {', '.join(FILTER_KEYS)})")
    for key in FILTER_KEYS:
        if filt.get(key) is None:
            raise invalid(f"filter.{key}", "is required")
    window = body.get("window")
    if window is not None and not isinstance(window, str):
        raise invalid("window", "must be a string HH:MM-HH:MM")
    return create_mailing(
        db,
        message=body.get("message"),  # type: ignore[arg-type]  # validated inside
        tag=filt.get("tag"),
        operator_code=filt.get("operator_code"),
        start=body.get("start_at"),  # type: ignore[arg-type]
        end=body.get("end_at"),  # type: ignore[arg-type]
        window=window,
        tz=tz,
        now=now,
        relative_times=False,
    )


def due_where(now: datetime) -> list[sa.ColumnElement[bool]]:
    """Mailings that are due (SPEC section 4, rule 1): started, not ended, not cancelled."""
    return [mailings.c.start_at <= now, mailings.c.end_at > now, mailings.c.cancelled_at.is_(None)]


def unfinalised_ended_where(now: datetime) -> list[sa.ColumnElement[bool]]:
    """Mailings that have ended but whose waiting messages no run has finalised yet."""
    return [mailings.c.end_at <= now, mailings.c.finished_at.is_(None)]


def message_counts(conn: Connection, now: datetime, mailing_id: int | None = None) -> dict[int, dict[str, int]]:
    """Messages per mailing and public status, from the counts the database keeps.

    Queued messages of a mailing that has ended but that no run has finalised
    yet count as they will be finalised (see ``models.public_status``).
    """
    query = sa.select(mailing_counts.c.mailing_id, mailing_counts.c.status, mailing_counts.c.n)
    ended = sa.select(mailings.c.id).where(*unfinalised_ended_where(now))
    if mailing_id is not None:
        query = query.where(mailing_counts.c.mailing_id == mailing_id)
        ended = ended.where(mailings.c.id == mailing_id)
    counts: dict[int, dict[str, int]] = {}
    for mid, status, n in conn.execute(query):
        add_count(counts.setdefault(mid, empty_counts()), status, n)
    failed_at_end = conn.execute(
        sa.select(messages.c.mailing_id, sa.func.count())
        .where(messages.c.mailing_id.in_(ended), messages.c.status == QUEUED, messages.c.attempts > 0)
        .group_by(messages.c.mailing_id)
    )
    for mid, n in failed_at_end:
        counts[mid][NOT_SENT] -= n
        counts[mid][FAILED] += n
    return counts


def _require(conn: Connection, mailing_id: int) -> Mapping[str, Any]:
    row = conn.execute(sa.select(mailings).where(mailings.c.id == mailing_id)).mappings().first()
    if row is None:
        raise invalid("id", f"no mailing with id {mailing_id}")
    return row


def list_mailings(db: Database, *, tz: str, now: datetime) -> list[dict[str, Any]]:
    with db.read() as conn:
        counts = message_counts(conn, now)
        rows = conn.execute(sa.select(mailings).order_by(mailings.c.id)).mappings().all()
    return [mailing_shape(row, counts.get(row["id"]), tz, now) for row in rows]


def get_mailing(db: Database, mailing_id: int, *, tz: str, now: datetime) -> dict[str, Any]:
    """One mailing as listed, plus ``audience``: the current users its filter matches."""
    with db.read() as conn:
        row = _require(conn, mailing_id)
        counts = message_counts(conn, now, mailing_id).get(mailing_id)
        audience = conn.execute(
            sa.select(sa.func.count())
            .select_from(users)
            .where(*audience_where(row["operator_code"], row["tag_key"]))
        ).scalar_one()
    return mailing_shape(row, counts, tz, now) | {"audience": audience}


def validate_status(status: str | None) -> str | None:
    if status is not None and status not in PUBLIC_STATUSES:
        raise invalid("status", f"{status!r} is not one of {', '.join(PUBLIC_STATUSES)}")
    return status


def count_messages(db: Database, mailing_id: int, *, now: datetime, status: str | None = None) -> int:
    status = validate_status(status)
    with db.read() as conn:
        _require(conn, mailing_id)
        counts = message_counts(conn, now, mailing_id).get(mailing_id, empty_counts())
    return counts[status] if status else sum(counts.values())


def iter_stats(
    db: Database,
    mailing_id: int,
    *,
    tz: str,
    now: datetime,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[dict[str, Any]]:
    """A mailing's messages with their clients, in id order, streamed."""
    status = validate_status(status)
    with db.read() as conn:
        ended = _require(conn, mailing_id)["end_at"] <= now  # fail before the caller starts printing
    return _stream_stats(db, mailing_id, tz, status, limit, offset, ended)


def _status_where(status: str | None, ended: bool) -> list[sa.ColumnElement[bool]]:
    """Messages whose public status (``models.public_status``) is ``status``."""
    m = messages.c
    if status is None:
        return []
    if status == SENT:
        return [m.status == SENT]
    if status == FAILED:
        return [sa.or_(m.status == FAILED, sa.and_(m.status == QUEUED, m.attempts > 0))] if ended else [
            m.status == FAILED
        ]
    if ended:
        return [sa.or_(m.status == NOT_SENT, sa.and_(m.status == QUEUED, m.attempts == 0))]
    return [m.status.in_((QUEUED, NOT_SENT))]


def _stream_stats(db, mailing_id, tz, status, limit, offset, ended) -> Iterator[dict[str, Any]]:
    query = (
        sa.select(
            messages.c.id,
            messages.c.status,
            messages.c.sent_at,
            messages.c.attempts,
            messages.c.last_error,
            users.c.phone_number,
            users.c.operator_code,
            users.c.tag,
            users.c.time_zone,
        )
        .join(users, users.c.id == messages.c.user_id)
        .where(messages.c.mailing_id == mailing_id)
        .order_by(messages.c.id)
        .limit(limit)
        .offset(offset or None)
    )
    query = query.where(*_status_where(status, ended))
    with db.read() as conn:
        for row in conn.execution_options(yield_per=STREAM_BATCH).execute(query).mappings():
            yield message_shape(row, tz, ended)


def cancel_mailing(db: Database, mailing_id: int, *, tz: str, now: datetime) -> tuple[dict[str, Any], bool]:
    """Stop a mailing: nothing more is sent; what was sent stays sent.

    Returns the mailing and whether this call cancelled it (False: it already was).
    """
    with db.write() as conn:
        row = _require(conn, mailing_id)
        changed = row["cancelled_at"] is None
        if changed:
            if row["end_at"] <= now:
                raise invalid("id", f"mailing {mailing_id} has already ended")
            conn.execute(sa.update(mailings).where(mailings.c.id == mailing_id).values(cancelled_at=now))
            close_queued(conn, messages.c.mailing_id == mailing_id)
            row = _require(conn, mailing_id)
        counts = message_counts(conn, now, mailing_id).get(mailing_id)
    return mailing_shape(row, counts, tz, now), changed

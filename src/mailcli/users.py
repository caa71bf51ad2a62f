"""Recipients: add, list, update, remove (the core behind ``mailcli users``).

Every function validates all of its input before it opens a write
transaction, so a rejected command writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcli.audience import bump_users_rev, close_queued
from mailcli.db import Database
from mailcli.errors import invalid
from mailcli.models import mailings, messages, users
from mailcli.shapes import user_shape
from mailcli.validation import (
    normalize_phone,
    operator_code_of,
    tag_key,
    validate_operator_code,
    validate_tag,
    validate_zone,
)

STREAM_BATCH = 2000


def _active(conn: Connection, phone: str):
    return conn.execute(
        sa.select(users).where(users.c.phone_number == phone, users.c.removed_at.is_(None))
    ).mappings().first()


def _require(conn: Connection, phone: str):
    row = _active(conn, phone)
    if row is None:
        raise invalid("phone_number", f"no user with phone number {phone}")
    return row


def add_user(db: Database, phone: str, tag: str, time_zone: str, *, now: datetime) -> dict[str, Any]:
    phone = normalize_phone(phone)
    tag = validate_tag(tag)
    time_zone = validate_zone(time_zone)
    row = {
        "phone_number": phone,
        "operator_code": operator_code_of(phone),
        "tag": tag,
        "tag_key": tag_key(tag),
        "time_zone": time_zone,
        "created_at": now,
        "updated_at": now,
    }
    with db.write() as conn:
        known = conn.execute(sa.select(users.c.id, users.c.removed_at).where(users.c.phone_number == phone)).first()
        if known is None:
            conn.execute(sa.insert(users).values(row))
        elif known.removed_at is None:
            raise invalid("phone_number", f"{phone} is already registered (use `mailcli users update`)")
        else:  # removed earlier: the same person again, with their history
            del row["created_at"]
            conn.execute(sa.update(users).where(users.c.id == known.id).values({**row, "removed_at": None}))
        bump_users_rev(conn)
    return user_shape(row)


def update_user(
    db: Database, phone: str, *, tag: str | None = None, time_zone: str | None = None, now: datetime
) -> dict[str, Any]:
    phone = normalize_phone(phone)
    if tag is None and time_zone is None:
        raise invalid(None, "nothing to change: give --tag and/or --tz")
    changes: dict[str, Any] = {"updated_at": now}
    if tag is not None:
        changes["tag"] = validate_tag(tag)
        changes["tag_key"] = tag_key(changes["tag"])
    if time_zone is not None:
        changes["time_zone"] = validate_zone(time_zone)
    with db.write() as conn:
        current = _require(conn, phone)
        conn.execute(sa.update(users).where(users.c.id == current["id"]).values(changes))
        if "tag_key" in changes and changes["tag_key"] != current["tag_key"]:
            # The user left the audience of mailings filtered on the old tag.
            left = sa.select(mailings.c.id).where(mailings.c.tag_key != changes["tag_key"])
            close_queued(conn, messages.c.user_id == current["id"], messages.c.mailing_id.in_(left))
        bump_users_rev(conn)
    return user_shape({**current, **changes})


def remove_user(db: Database, phone: str, *, now: datetime) -> dict[str, Any]:
    """Remove a user: nothing more is sent to them; what was sent stays in the history."""
    phone = normalize_phone(phone)
    with db.write() as conn:
        current = _require(conn, phone)
        conn.execute(sa.update(users).where(users.c.id == current["id"]).values(removed_at=now, updated_at=now))
        close_queued(conn, messages.c.user_id == current["id"])
        bump_users_rev(conn)
    return user_shape(current)


def _list_where(tag: str | None, operator_code: str | None) -> list[sa.ColumnElement[bool]]:
    where = [users.c.removed_at.is_(None)]
    if operator_code is not None:
        where.append(users.c.operator_code == validate_operator_code(operator_code))
    if tag is not None:
        where.append(users.c.tag_key == tag_key(validate_tag(tag)))
    return where


def count_users(db: Database, *, tag: str | None = None, operator_code: str | None = None) -> int:
    where = _list_where(tag, operator_code)
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(users).where(*where)).scalar_one()


def iter_users(
    db: Database,
    *,
    tag: str | None = None,
    operator_code: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[dict[str, Any]]:
    """Current users in the order they were added, streamed (memory does not grow with the count)."""
    where = _list_where(tag, operator_code)  # validate before the first row is asked for
    return _stream_users(db, where, limit, offset)


def _stream_users(db: Database, where, limit: int | None, offset: int) -> Iterator[dict[str, Any]]:
    query = (
        sa.select(users.c.phone_number, users.c.operator_code, users.c.tag, users.c.time_zone)
        .where(*where)
        .order_by(users.c.id)
        .limit(limit)
        .offset(offset or None)
    )
    with db.read() as conn:
        result = conn.execution_options(yield_per=STREAM_BATCH).execute(query).mappings()
        for row in result:
            yield user_shape(row)

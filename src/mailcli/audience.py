"""Who a mailing is for, as message rows: set-based, in SQL, never a Python loop.

A mailing's audience is every current user whose operator code matches and
whose tag matches ignoring case. While the mailing is due, its audience is
materialised into ``messages`` (one row per user, a stable id per pair) by one
``INSERT ... SELECT`` that skips pairs that already exist, so it can be
repeated at every run to pick up users who joined meanwhile.
``users_rev`` counts changes to users, so a run repeats it only when users changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcli.models import FAILED, NOT_SENT, QUEUED, mailings, messages, state, users

USERS_REV = "users_rev"


def users_rev(conn: Connection) -> int:
    return conn.execute(sa.select(state.c.value).where(state.c.key == USERS_REV)).scalar_one()


def bump_users_rev(conn: Connection) -> None:
    """Record that users changed, so running mailings look at their audience again."""
    conn.execute(sa.update(state).where(state.c.key == USERS_REV).values(value=state.c.value + 1))


def audience_where(operator_code: str, tag_key: str) -> list[sa.ColumnElement[bool]]:
    return [users.c.operator_code == operator_code, users.c.tag_key == tag_key, users.c.removed_at.is_(None)]


def dialect_insert(conn: Connection, table: sa.Table):
    """INSERT with ON CONFLICT support for the connection's backend."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def materialize(conn: Connection, mailing: Mapping[str, Any], now: datetime) -> int:
    """Create the missing message rows of a due mailing; return how many were added."""
    rev = users_rev(conn)  # read first: a user added after this point is seen by the next refresh
    audience = sa.select(
        sa.literal(mailing["id"]),
        users.c.id,
        sa.literal(QUEUED),
        sa.literal(0),
        sa.literal(now, messages.c.next_attempt_at.type),
    ).where(*audience_where(mailing["operator_code"], mailing["tag_key"]))
    stmt = (
        dialect_insert(conn, messages)
        .from_select(["mailing_id", "user_id", "status", "attempts", "next_attempt_at"], audience)
        .on_conflict_do_nothing(index_elements=["user_id", "mailing_id"])
    )
    added = conn.execute(stmt).rowcount
    # Users who left the audience (removed, or tagged otherwise) and came back while the
    # mailing is due: their withdrawn, never-attempted message waits again.
    rejoined = sa.select(users.c.id).where(*audience_where(mailing["operator_code"], mailing["tag_key"]))
    added += conn.execute(
        sa.update(messages)
        .where(
            messages.c.mailing_id == mailing["id"],
            messages.c.status == NOT_SENT,
            messages.c.attempts == 0,
            messages.c.user_id.in_(rejoined),
        )
        .values(status=QUEUED, next_attempt_at=now)
    ).rowcount
    conn.execute(sa.update(mailings).where(mailings.c.id == mailing["id"]).values(audience_rev=rev))
    return max(added, 0)


def close_queued(conn: Connection, *where: sa.ColumnElement[bool]) -> int:
    """End the wait of queued messages: attempted ones become ``failed``, the others ``not_sent``.

    Used when a mailing ends or is cancelled and when its user is removed or
    leaves its audience. A message in flight that the gateway accepts is still
    recorded as ``sent`` afterwards: what was sent stays sent.
    """
    result = conn.execute(
        sa.update(messages)
        .where(messages.c.status == QUEUED, *where)
        .values(
            status=sa.case((messages.c.attempts > 0, FAILED), else_=NOT_SENT),
            claimed_by=None,
            claim_expires_at=None,
        )
    )
    return result.rowcount

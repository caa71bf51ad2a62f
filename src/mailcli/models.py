"""The storage model: users, mailings, messages (SQLModel tables).

The schema itself is created by the versioned migrations in
``mailcli/migrations``; these classes describe it for queries, and
``tests/test_migrations.py`` checks that the two agree.

Times are stored in UTC. A message's ``status`` column holds one of
``queued`` (waiting to be sent, shown as ``not_sent``), ``sent``, ``failed``
and ``not_sent`` (final: never sent and never will be).
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

UTC = timezone.utc

QUEUED = "queued"
SENT = "sent"
FAILED = "failed"
NOT_SENT = "not_sent"
PUBLIC_STATUSES = (NOT_SENT, SENT, FAILED)


def public_status(status: str, attempts: int = 0, ended: bool = False) -> str:
    """The status shown to operators.

    A queued message is ``not_sent`` while it waits. Once its mailing has ended it
    is final even before a run has finalised it: ``failed`` if all its attempts
    failed, ``not_sent`` if it was never attempted (SPEC section 4, rule 4).
    """
    if status != QUEUED:
        return status
    return FAILED if ended and attempts > 0 else NOT_SENT


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime, stored as a naive UTC timestamp on every backend."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=UTC)
        return value


def _when(nullable: bool = False):
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable)


class User(SQLModel, table=True):
    """One row per phone number, ever: a removed user keeps the row (``removed_at``) so
    that mailing history stays intact, and adding the phone again revives it, so a phone
    can never get a second message of the same mailing."""

    __tablename__ = "users"
    __table_args__ = (
        sa.Index("ux_users_phone", "phone_number", unique=True),
        sa.Index("ix_users_audience", "operator_code", "tag_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    phone_number: str = Field(sa_type=sa.String(11), nullable=False)
    operator_code: str = Field(sa_type=sa.String(3), nullable=False)
    tag: str = Field(sa_type=sa.String(255), nullable=False)
    tag_key: str = Field(sa_type=sa.String(255), nullable=False)
    time_zone: str = Field(sa_type=sa.String(64), nullable=False)
    created_at: datetime = _when()
    updated_at: datetime = _when()
    removed_at: datetime | None = _when(nullable=True)


class Mailing(SQLModel, table=True):
    __tablename__ = "mailings"

    id: int | None = Field(default=None, primary_key=True)
    message: str = Field(sa_type=sa.Text, nullable=False)
    tag: str = Field(sa_type=sa.String(255), nullable=False)
    tag_key: str = Field(sa_type=sa.String(255), nullable=False)
    operator_code: str = Field(sa_type=sa.String(3), nullable=False)
    start_at: datetime = _when()
    end_at: datetime = _when()
    window_start: int | None = Field(default=None, nullable=True)
    window_end: int | None = Field(default=None, nullable=True)
    created_at: datetime = _when()
    cancelled_at: datetime | None = _when(nullable=True)
    finished_at: datetime | None = _when(nullable=True)
    audience_rev: int = Field(default=0, nullable=False)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "mailing_id", name="ux_messages_user_mailing"),
        sa.Index("ix_messages_queue", "mailing_id", "status", "next_attempt_at"),
        sa.Index("ix_messages_mailing", "mailing_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    mailing_id: int = Field(foreign_key="mailings.id", nullable=False)
    user_id: int = Field(foreign_key="users.id", nullable=False)
    status: str = Field(sa_type=sa.String(8), nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime = _when()
    claimed_by: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    claim_expires_at: datetime | None = _when(nullable=True)
    sent_at: datetime | None = _when(nullable=True)
    last_error: str | None = Field(default=None, sa_type=sa.String(500), nullable=True)


class MailingCount(SQLModel, table=True):
    """How many messages of a mailing are in a status; kept by database triggers (migration 0003)."""

    __tablename__ = "mailing_counts"

    mailing_id: int = Field(foreign_key="mailings.id", primary_key=True)
    status: str = Field(sa_type=sa.String(8), primary_key=True)
    n: int = Field(nullable=False)


class State(SQLModel, table=True):
    """Small counters shared by every process, e.g. ``users_rev``."""

    __tablename__ = "mailcli_state"

    key: str = Field(sa_type=sa.String(32), primary_key=True)
    value: int = Field(default=0, nullable=False)


users = User.__table__
mailings = Mailing.__table__
messages = Message.__table__
mailing_counts = MailingCount.__table__
state = State.__table__
metadata = SQLModel.metadata

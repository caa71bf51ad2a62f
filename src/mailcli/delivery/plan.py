"""``mailcli run --dry-run``: what a run would send now, without sending or changing anything."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mailcli.audience import audience_where
from mailcli.db import Database
from mailcli.delivery.gateway import build_request
from mailcli.models import QUEUED, mailings, messages, users
from mailcli.validation import format_time, format_window

SAMPLE = 3
NEW_ID = 0  # shown as the msgId of a message that does not exist yet (ids are given when it is queued)


def plan(db: Database, *, gateway_url: str | None, token: str | None, tz: str, now: datetime) -> list[dict[str, Any]]:
    """Per due mailing: its audience, how many messages a run would send now, sample requests."""
    url = gateway_url or "{gateway_url}"
    result = []
    with db.read() as conn:
        due = conn.execute(
            sa.select(mailings)
            .where(mailings.c.start_at <= now, mailings.c.end_at > now, mailings.c.cancelled_at.is_(None))
            .order_by(mailings.c.id)
        ).mappings().all()
        for mailing in due:
            audience = audience_where(mailing["operator_code"], mailing["tag_key"])
            has_message = (
                sa.select(messages.c.id)
                .where(messages.c.mailing_id == mailing["id"], messages.c.user_id == users.c.id)
                .exists()
            )
            new = sa.select(users.c.phone_number).where(*audience, ~has_message)
            waiting = (
                sa.select(messages.c.id, users.c.phone_number)
                .join(users, users.c.id == messages.c.user_id)
                .where(
                    messages.c.mailing_id == mailing["id"],
                    messages.c.status == QUEUED,
                    messages.c.next_attempt_at <= now,
                )
            )
            count_new = conn.execute(sa.select(sa.func.count()).select_from(new.subquery())).scalar_one()
            count_waiting = conn.execute(sa.select(sa.func.count()).select_from(waiting.subquery())).scalar_one()
            samples = [(row.id, row.phone_number) for row in conn.execute(waiting.order_by(messages.c.id).limit(SAMPLE))]
            if len(samples) < SAMPLE:
                samples += [(NEW_ID, p) for p in conn.execute(new.limit(SAMPLE - len(samples))).scalars()]
            result.append(
                {
                    "mailing_id": mailing["id"],
                    "message": mailing["message"],
                    "end_at": format_time(mailing["end_at"], tz),
                    "window": format_window(mailing["window_start"], mailing["window_end"]),
                    "audience": conn.execute(
                        sa.select(sa.func.count()).select_from(users).where(*audience)
                    ).scalar_one(),
                    "would_send": count_new + count_waiting,
                    "sample": [
                        build_request(url, message_id, phone, mailing["message"]).describe(token)
                        for message_id, phone in samples
                    ],
                }
            )
    return result

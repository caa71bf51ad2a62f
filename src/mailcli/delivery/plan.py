"""``mailcli run --dry-run``: what a run would send now, without sending or changing anything."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mailcli.audience import audience_where
from mailcli.db import Database
from mailcli.delivery.gateway import build_request
from mailcli.mailings import due_where
from mailcli.models import QUEUED, mailings, messages, users
from mailcli.validation import format_time, format_window, window_allows

SAMPLE = 3
NEW_ID = 0  # shown as the msgId of a message that does not exist yet (ids are given when it is queued)


def plan(db: Database, *, gateway_url: str | None, token: str | None, tz: str, now: datetime) -> list[dict[str, Any]]:
    """Per due mailing: its audience, how many messages a run would send now, sample requests.

    A run would send the audience's users who have no message yet and the
    waiting messages that are due, except those whose users are outside the
    mailing's sending window in their own zone right now.
    """
    url = gateway_url or "{gateway_url}"
    result = []
    with db.read() as conn:
        due = conn.execute(
            sa.select(mailings)
            .where(*due_where(now))
            .order_by(mailings.c.id)
        ).mappings().all()
        for mailing in due:
            audience = audience_where(mailing["operator_code"], mailing["tag_key"])
            has_message = (
                sa.select(messages.c.id)
                .where(messages.c.mailing_id == mailing["id"], messages.c.user_id == users.c.id)
                .exists()
            )
            new = sa.select(sa.literal(NEW_ID).label("id"), users.c.phone_number, users.c.time_zone).where(
                *audience, ~has_message
            )
            waiting = (
                sa.select(messages.c.id, users.c.phone_number, users.c.time_zone)
                .join(users, users.c.id == messages.c.user_id)
                .where(
                    messages.c.mailing_id == mailing["id"],
                    messages.c.status == QUEUED,
                    messages.c.next_attempt_at <= now,
                )
            )
            per_zone: dict[str, int] = {}
            for query in (new, waiting):
                rows = query.subquery()
                for zone_name, n in conn.execute(
                    sa.select(rows.c.time_zone, sa.func.count()).group_by(rows.c.time_zone)
                ):
                    per_zone[zone_name] = per_zone.get(zone_name, 0) + n
            if mailing["window_start"] is None:
                open_zones = list(per_zone)
            else:
                open_zones = [
                    z for z in per_zone if window_allows(mailing["window_start"], mailing["window_end"], now, z)
                ]
            samples = []
            for query in (waiting.order_by(messages.c.id), new):
                if len(samples) < SAMPLE and open_zones:
                    limit = SAMPLE - len(samples)
                    samples += conn.execute(query.where(users.c.time_zone.in_(open_zones)).limit(limit)).all()
            result.append(
                {
                    "mailing_id": mailing["id"],
                    "message": mailing["message"],
                    "end_at": format_time(mailing["end_at"], tz),
                    "window": format_window(mailing["window_start"], mailing["window_end"]),
                    "audience": conn.execute(
                        sa.select(sa.func.count()).select_from(users).where(*audience)
                    ).scalar_one(),
                    "would_send": sum(per_zone[z] for z in open_zones),
                    "sample": [
                        build_request(url, row.id, row.phone_number, mailing["message"]).describe(token)
                        for row in samples
                    ],
                }
            )
    return result

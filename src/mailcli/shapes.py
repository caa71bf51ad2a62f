"""The SPEC's section-1 objects, built from database rows.

Every ``--json`` output (and any later HTTP API) prints exactly these shapes:
the SPEC's keys with the SPEC's formats, plus a few documented extras.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailcli.models import PUBLIC_STATUSES, public_status
from mailcli.validation import format_time, format_window


def user_shape(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "phone_number": row["phone_number"],
        "operator_code": row["operator_code"],
        "tag": row["tag"],
        "time_zone": row["time_zone"],
    }


def empty_counts() -> dict[str, int]:
    return {status: 0 for status in PUBLIC_STATUSES}


def add_count(counts: dict[str, int], status: str, n: int) -> None:
    key = public_status(status)
    counts[key] = counts.get(key, 0) + n


def mailing_state(row: Mapping[str, Any], now: datetime) -> str:
    """scheduled, active, finished or cancelled (an extra key in the listed shape)."""
    if row["cancelled_at"] is not None:
        return "cancelled"
    if now < row["start_at"]:
        return "scheduled"
    if now < row["end_at"]:
        return "active"
    return "finished"


def mailing_shape(row: Mapping[str, Any], counts: dict[str, int] | None, tz: str, now: datetime) -> dict[str, Any]:
    """A mailing as listed: the created shape plus ``id`` and ``message_count``."""
    shape: dict[str, Any] = {
        "id": row["id"],
        "message": row["message"],
        "start_at": format_time(row["start_at"], tz),
        "end_at": format_time(row["end_at"], tz),
        "filter": {"tag": row["tag"], "operator_code": row["operator_code"]},
        "message_count": counts if counts is not None else empty_counts(),
        "window": format_window(row["window_start"], row["window_end"]),
        "state": mailing_state(row, now),
    }
    if row["cancelled_at"] is not None:
        shape["cancelled_at"] = format_time(row["cancelled_at"], tz)
    return shape


def message_shape(row: Mapping[str, Any], tz: str, ended: bool = False) -> dict[str, Any]:
    """A message in a mailing's stats, with its client (the user it is for)."""
    return {
        "id": row["id"],
        "status": public_status(row["status"], row["attempts"], ended),
        "sent_at": format_time(row["sent_at"], tz),
        "client": user_shape(row),
        "attempts": row["attempts"],
        "last_error": row["last_error"],
    }


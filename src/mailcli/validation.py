"""Parsing and validation of what operators type: phones, tags, zones, times.

Every function either returns the normalised value or raises
:class:`~mailcli.errors.MailcliError` (exit code 2) naming the field and the
reason. Nothing here touches the database, so the rules are easy to test on
their own (see tests/test_validation.py, which includes property tests).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from mailcli.errors import invalid

UTC = timezone.utc

PHONE_RE = re.compile(r"7[0-9]{10}", re.ASCII)
OPERATOR_CODE_RE = re.compile(r"[0-9]{3}", re.ASCII)
TIME_RE = re.compile(r"([0-9]{2})\.([0-9]{2})\.([0-9]{4}) ([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?", re.ASCII)
RELATIVE_RE = re.compile(r"\+([0-9]{1,9})([smhd])", re.ASCII)
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
INPUT_TIME_FORMS = "dd.mm.yyyy hh:mm[:ss]"
CLI_TIME_FORMS = "dd.mm.yyyy hh:mm[:ss], now or +N followed by s, m, h or d (e.g. +90m)"
OUTPUT_TIME_FORMAT = "%d.%m.%Y %H:%M:%S"
MAX_YEAR = 9998  # leaves a day of margin so that any stored time shows in any zone
TAG_MAX_LENGTH = 255
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


# --- phones -----------------------------------------------------------------


def phone_hint(raw: str) -> str | None:
    """The 7XXXXXXXXXX form a formatted number most likely means, if any."""
    digits = "".join(ch for ch in raw if ch in "0123456789")
    if len(digits) == 11 and digits[0] in "78":
        return "7" + digits[1:]
    if len(digits) == 10 and digits[0] == "9":
        return "7" + digits
    return None


def normalize_phone(raw: object, field: str = "phone_number") -> str:
    """Return the phone as 11 digits starting with 7, or raise.

    Only the exact form is accepted; a formatted number such as
    ``+7 911 655-13-68`` is rejected with the normalised form as a hint, so
    that nothing is stored that the operator did not write.
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise invalid(field, "must be a string of 11 digits starting with 7 (7XXXXXXXXXX)")
    value = raw.strip()
    if PHONE_RE.fullmatch(value):
        return value
    if not value:
        raise invalid(field, "is required (11 digits starting with 7, e.g. 79114048095)")
    hint = phone_hint(value)
    shown = _shorten(value)
    if hint and hint != value:
        raise invalid(field, f"{shown!r} is not in the form 7XXXXXXXXXX (11 digits starting with 7); did you mean {hint}?")
    raise invalid(field, f"{shown!r} is not in the form 7XXXXXXXXXX (11 digits starting with 7)")


def operator_code_of(phone: str) -> str:
    """The mobile operator code: the three digits after the leading 7."""
    return phone[1:4]


def validate_operator_code(raw: object, field: str = "operator_code") -> str:
    value = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
    if value is None or not OPERATOR_CODE_RE.fullmatch(value):
        raise invalid(field, f"{_shorten(str(raw))!r} is not a 3-digit operator code (e.g. 911)")
    return value


# --- tags and text ----------------------------------------------------------


def validate_tag(raw: object, field: str = "tag") -> str:
    """A tag is free text, required and non-empty; surrounding blanks are dropped."""
    if not isinstance(raw, str):
        raise invalid(field, "is required (free text, e.g. python-tips)")
    value = raw.strip()
    if not value:
        raise invalid(field, "must not be empty")
    if len(value) > TAG_MAX_LENGTH:
        raise invalid(field, f"is {len(value)} characters long; at most {TAG_MAX_LENGTH} are allowed")
    if CONTROL_RE.search(value):
        raise invalid(field, "must not contain control characters such as newlines or tabs")
    return value


def tag_key(tag: str) -> str:
    """The form tags are matched by: case is ignored (``Python-tips`` matches ``python-tips``)."""
    return tag.casefold()


def validate_message(raw: object, field: str = "message") -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise invalid(field, "is required and must not be empty")
    return raw


# --- time zones -------------------------------------------------------------


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """Every IANA zone name, from the list the tzdata package ships (read once per process).

    ``zoneinfo.available_timezones()`` gives the same names but walks the system's
    zoneinfo directories too, which costs 20 ms on every command.
    """
    from importlib.resources import files

    return frozenset(files("tzdata").joinpath("zones").read_text(encoding="utf-8").split())


@lru_cache(maxsize=1)
def _zone_names_by_folded_case() -> dict[str, str]:
    return {name.casefold(): name for name in zone_names()}


def validate_zone(raw: object, field: str = "time_zone") -> str:
    """An IANA zone name such as ``Europe/Moscow``; anything else is rejected."""
    if not isinstance(raw, str) or not raw.strip():
        raise invalid(field, "is required (an IANA zone name such as Europe/Moscow)")
    value = raw.strip()
    if value in zone_names():
        return value
    canonical = _zone_names_by_folded_case().get(value.casefold())
    if canonical:
        raise invalid(field, f"unknown time zone {_shorten(value)!r}; did you mean {canonical}?")
    raise invalid(field, f"unknown time zone {_shorten(value)!r} (use an IANA name such as Europe/Moscow)")


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo for an already validated name."""
    return ZoneInfo(name)


# --- times ------------------------------------------------------------------


def utcnow() -> datetime:
    """The real clock. Core functions take ``now`` as a parameter; this is its default."""
    return datetime.now(UTC)


def parse_time(raw: object, tz: str, now: datetime, *, field: str, relative: bool = True) -> datetime:
    """Parse an operator-entered time and return it as an aware UTC datetime.

    ``dd.mm.yyyy hh:mm`` and ``dd.mm.yyyy hh:mm:ss`` are read in the operator's
    zone ``tz``. With ``relative`` (the command line), ``now`` and ``+N``
    followed by ``s``, ``m``, ``h`` or ``d`` are accepted too. A wall-clock time
    that does not exist in the zone (skipped by a DST change) is rejected; an
    ambiguous one (repeated by a DST change) means its first occurrence.
    """
    forms = CLI_TIME_FORMS if relative else INPUT_TIME_FORMS
    if not isinstance(raw, str) or not raw.strip():
        raise invalid(field, f"is required (use {forms})")
    text = raw.strip()
    if relative:
        if text.lower() == "now":
            return now.astimezone(UTC)
        match = RELATIVE_RE.fullmatch(text)
        if match:
            amount, unit = int(match.group(1)), match.group(2)
            try:
                moment = now.astimezone(UTC) + timedelta(**{_UNITS[unit]: amount})
            except OverflowError:
                moment = datetime.max.replace(tzinfo=UTC)
            if moment.year > MAX_YEAR:
                raise invalid(field, f"{text!r} is too far in the future (the year must be at most {MAX_YEAR})")
            return moment
    match = TIME_RE.fullmatch(text)
    if not match:
        raise invalid(field, f"{_shorten(text)!r} is not a valid time (use {forms})")
    day, month, year, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    if year > MAX_YEAR:
        raise invalid(field, f"{text!r} is too far in the future (the year must be at most {MAX_YEAR})")
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=zone(tz))
        moment = local.astimezone(UTC)
    except ValueError as exc:
        raise invalid(field, f"{text!r} is not a valid date or time ({exc})") from None
    except OverflowError:
        raise invalid(field, f"{text!r} is out of range") from None
    from dateutil import tz as dateutil_tz

    if not dateutil_tz.datetime_exists(local):
        raise invalid(field, f"{text!r} does not exist in {tz} (the clocks skip it for daylight saving time)")
    return moment


def format_time(moment: datetime | None, tz: str) -> str | None:
    """``dd.mm.yyyy hh:mm:ss`` in the zone ``tz``; ``None`` stays ``None``."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone(tz)).strftime(OUTPUT_TIME_FORMAT)


def validate_schedule(start: datetime, end: datetime, now: datetime) -> None:
    """Start and end in the future (a start in the current minute counts as now); end after start."""
    current_minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    if start < current_minute:
        raise invalid("start_at", "is in the past; a mailing must start now or later")
    if end <= now:
        raise invalid("end_at", "is in the past; a mailing must end in the future")
    if end <= start:
        raise invalid("end_at", "must be after start_at")


# --- sending windows --------------------------------------------------------

WINDOW_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])", re.ASCII)


def parse_window(raw: str | None, field: str = "window") -> tuple[int, int] | None:
    """``HH:MM-HH:MM`` as (start, end) minutes of the day; it may cross midnight."""
    if raw is None:
        return None
    text = raw.strip()
    match = WINDOW_RE.fullmatch(text)
    if not match:
        raise invalid(field, f"{_shorten(text)!r} is not a window of the form HH:MM-HH:MM (e.g. 09:00-21:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise invalid(field, "start and end of the window must differ")
    return start, end


def format_window(start: int | None, end: int | None) -> str | None:
    if start is None or end is None:
        return None
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def minute_in_window(minute_of_day: int, start: int, end: int) -> bool:
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end  # crosses midnight


def window_allows(start: int, end: int, now: datetime, tz: str) -> bool:
    """Whether ``now`` falls inside the daily window in the zone ``tz``."""
    local = now.astimezone(zone(tz))
    return minute_in_window(local.hour * 60 + local.minute, start, end)


def next_window_opening(start: int, end: int, now: datetime, tz: str) -> datetime:
    """The first moment after ``now`` at which the window is open in zone ``tz`` (UTC).

    Right on the days the clocks change: when the opening wall-clock time is
    skipped by DST, the window opens when the clocks jump (e.g. a 02:30 opening
    on a day that skips 02:00-03:00 opens at 03:00 local).
    """
    from dateutil import tz as dateutil_tz

    zi = zone(tz)
    local_now = now.astimezone(zi)
    for days in range(0, 3):
        day = (local_now + timedelta(days=days)).date()
        opening = datetime.combine(day, time(start // 60, start % 60), tzinfo=zi)
        if dateutil_tz.datetime_exists(opening):
            opening_utc = opening.astimezone(UTC)
        else:  # walk from the same wall time on the earlier offset to the jump
            opening_utc = opening.replace(fold=1).astimezone(UTC)
            while not window_allows(start, end, opening_utc, tz):
                opening_utc += timedelta(minutes=1)
        if opening_utc > now:
            return opening_utc
    raise AssertionError("a daily window opens within two days")  # pragma: no cover


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Parsing and validation rules of SPEC section 1, including property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mailcli.errors import MailcliError
from mailcli.validation import (
    format_time,
    format_window,
    minute_in_window,
    next_window_opening,
    normalize_phone,
    operator_code_of,
    parse_time,
    parse_window,
    phone_hint,
    tag_key,
    validate_schedule,
    validate_tag,
    validate_zone,
    window_allows,
    zone_names,
)

UTC = UTC
NOW = datetime(2026, 12, 4, 13, 0, 30, tzinfo=UTC)
ZONES = sorted(zone_names())

phones = st.from_regex(r"\A7[0-9]{10}\Z")


# --- phones ---------------------------------------------------------------------


@given(phones)
def test_valid_phone_is_kept_and_its_operator_code_derived(phone):
    assert normalize_phone(phone) == phone
    assert operator_code_of(phone) == phone[1:4]


@given(st.text())
def test_phone_parsing_never_crashes_and_only_accepts_the_exact_form(text):
    try:
        result = normalize_phone(text)
    except MailcliError as exc:
        assert exc.exit_code == 2 and exc.field == "phone_number"
    else:
        assert len(result) == 11 and result[0] == "7" and result.isascii() and result.isdigit()


FORMATTERS = [
    lambda p: f"+{p}",
    lambda p: f"{p[0]} {p[1:4]} {p[4:7]}-{p[7:9]}-{p[9:]}",
    lambda p: f"+{p[0]} ({p[1:4]}) {p[4:]}",
    lambda p: f"8{p[1:]}",
    lambda p: p[1:],
]


@given(phones, st.sampled_from(FORMATTERS))
def test_formatted_phone_is_rejected_with_the_normalised_form_as_hint(phone, formatter):
    formatted = formatter(phone)
    assume(len(formatted) != 10 or formatted[0] == "9")  # 10 digits: only a mobile code (9XX) is guessed
    with pytest.raises(MailcliError) as info:
        normalize_phone(formatted)
    assert phone in str(info.value)
    assert phone_hint(formatted) == phone


@pytest.mark.parametrize("raw", ["7911404809", "791140480955", "69114048095", "7911404809a", "", "   ", "٧٩١١٤٠٤٨٠٩٥"])
def test_malformed_phones_are_rejected(raw):
    with pytest.raises(MailcliError) as info:
        normalize_phone(raw)
    assert info.value.exit_code == 2
    assert str(info.value).startswith("phone_number:")


def test_integer_phone_from_json_is_accepted():
    assert normalize_phone(79114048095) == "79114048095"


# --- tags and zones -------------------------------------------------------------------


@given(st.text(min_size=1, max_size=50).filter(lambda t: t.strip() and t.isprintable()))
def test_tag_matching_ignores_case(tag):
    assert tag_key(validate_tag(tag)) == tag_key(validate_tag(tag.upper())) or tag.upper().casefold() != tag.casefold()
    assert tag_key("Python-tips") == tag_key("python-tips") == tag_key("PYTHON-TIPS")


@pytest.mark.parametrize("raw", ["", "   ", None, "a\nb", "x" * 256])
def test_bad_tags_are_rejected(raw):
    with pytest.raises(MailcliError) as info:
        validate_tag(raw)
    assert info.value.field == "tag"


@given(st.sampled_from(ZONES))
def test_every_iana_zone_is_accepted(name):
    assert validate_zone(name) == name


@pytest.mark.parametrize("raw,hint", [("europe/moscow", "Europe/Moscow"), ("Mars/Olympus", None), ("MSK+3", None)])
def test_unknown_zones_are_rejected_with_a_case_hint(raw, hint):
    with pytest.raises(MailcliError) as info:
        validate_zone(raw)
    assert info.value.field == "time_zone"
    if hint:
        assert hint in str(info.value)


# --- times ----------------------------------------------------------------------------


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)).map(lambda d: d.replace(microsecond=0)),
       st.sampled_from(["UTC", "Europe/Moscow", "Asia/Vladivostok", "America/New_York", "Asia/Kathmandu"]))
def test_format_then_parse_round_trips(moment, tz):
    aware = moment.replace(tzinfo=UTC)
    text = format_time(aware, tz)
    parsed = parse_time(text, tz, NOW, field="start_at")
    # A wall-clock time repeated by a DST change reads as its first occurrence.
    assert parsed == aware or (parsed < aware and format_time(parsed, tz) == text)


@given(st.text())
def test_time_parsing_never_crashes(text):
    try:
        parse_time(text, "Europe/Moscow", NOW, field="start_at")
    except MailcliError as exc:
        assert exc.exit_code == 2 and exc.field == "start_at"


def test_times_are_read_in_the_operators_zone():
    moscow = parse_time("20.12.2026 16:10", "Europe/Moscow", NOW, field="start_at")
    assert moscow == datetime(2026, 12, 20, 13, 10, tzinfo=UTC)
    assert parse_time("20.12.2026 16:10:05", "UTC", NOW, field="start_at") == datetime(2026, 12, 20, 16, 10, 5, tzinfo=UTC)


@pytest.mark.parametrize("text,delta", [("now", timedelta(0)), ("+90m", timedelta(minutes=90)), ("+1d", timedelta(days=1)),
                                        ("+30s", timedelta(seconds=30)), ("+2h", timedelta(hours=2)), ("NOW", timedelta(0))])
def test_relative_times_on_the_command_line(text, delta):
    assert parse_time(text, "Europe/Moscow", NOW, field="start_at") == NOW + delta


@pytest.mark.parametrize("text", ["now", "+90m"])
def test_relative_times_are_refused_where_not_allowed(text):
    with pytest.raises(MailcliError):
        parse_time(text, "Europe/Moscow", NOW, field="start_at", relative=False)


@pytest.mark.parametrize("text", ["2022-12-20 16:10", "20/12/2022 16:10", "20.12.22 16:10", "31.02.2027 10:00",
                                  "20.12.2027 24:00", "1.2.2027 10:00", "20.12.2027 16:10:60", "+5w", "+m", "tomorrow",
                                  "+9999999999d"])
def test_other_time_forms_are_rejected(text):
    with pytest.raises(MailcliError) as info:
        parse_time(text, "Europe/Moscow", NOW, field="end_at")
    assert info.value.field == "end_at"


def test_a_time_skipped_by_dst_is_rejected_and_a_repeated_one_is_its_first_occurrence():
    with pytest.raises(MailcliError, match="does not exist"):
        parse_time("28.03.2027 02:30", "Europe/Berlin", NOW, field="start_at")
    first = parse_time("31.10.2027 02:30", "Europe/Berlin", NOW, field="start_at")
    assert first == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # still summer time (UTC+2)


def test_schedule_rules():
    minute_start = NOW.replace(second=0)
    validate_schedule(minute_start, NOW + timedelta(minutes=5), NOW)  # the current minute counts as now
    with pytest.raises(MailcliError, match="start_at"):
        validate_schedule(minute_start - timedelta(seconds=1), NOW + timedelta(minutes=5), NOW)
    with pytest.raises(MailcliError, match="end_at"):
        validate_schedule(NOW + timedelta(minutes=5), NOW + timedelta(minutes=5), NOW)
    with pytest.raises(MailcliError, match="end_at"):
        validate_schedule(minute_start, NOW - timedelta(seconds=1), NOW)


# --- windows --------------------------------------------------------------------------


@given(st.integers(0, 1439), st.integers(0, 1439))
def test_window_round_trips(start, end):
    assume(start != end)
    text = format_window(start, end)
    assert parse_window(text) == (start, end)


@pytest.mark.parametrize("raw", ["25:00-26:00", "10:00-10:00", "9:00-17:00", "09:00 - 17:00", "09:00", "x"])
def test_bad_windows_are_rejected(raw):
    with pytest.raises(MailcliError) as info:
        parse_window(raw)
    assert info.value.field == "window"


def test_window_crossing_midnight():
    start, end = parse_window("22:00-06:00")
    assert minute_in_window(23 * 60, start, end)
    assert minute_in_window(5 * 60 + 59, start, end)
    assert not minute_in_window(6 * 60, start, end)
    assert not minute_in_window(12 * 60, start, end)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda d: d.replace(tzinfo=UTC)),
       st.integers(0, 1439), st.integers(0, 1439),
       st.sampled_from(["Europe/Moscow", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]))
def test_next_window_opening_is_the_first_open_minute_after_now(now, start, end, tz):
    assume(start != end)
    opening = next_window_opening(start, end, now, tz)
    assert opening > now
    assert window_allows(start, end, opening, tz)
    assert opening - now <= timedelta(days=1, hours=3)


def test_window_is_judged_in_each_users_zone():
    start, end = parse_window("09:00-21:00")
    moment = datetime(2026, 12, 4, 5, 0, tzinfo=UTC)  # 08:00 Moscow, 15:00 Vladivostok
    assert not window_allows(start, end, moment, "Europe/Moscow")
    assert window_allows(start, end, moment, "Asia/Vladivostok")
    assert next_window_opening(start, end, moment, "Europe/Moscow") == datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


def test_next_window_opening_on_a_dst_day():
    # On 28.03.2027 Berlin skips 02:00-03:00: a window opening at 02:30 opens at 03:00 local (01:00 UTC).
    start, end = parse_window("02:30-05:00")
    now = datetime(2027, 3, 27, 23, 0, tzinfo=UTC)
    assert next_window_opening(start, end, now, "Europe/Berlin") == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)

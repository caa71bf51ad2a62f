"""``mailcli mailings``: create, list, show, stats and cancel, driven as an operator would."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailcli.audience import materialize
from mailcli.config import load_settings
from mailcli.db import open_database

UTC = UTC
OPERATOR_TZ = "Europe/Moscow"
OUTPUT_TIME_RE = re.compile(r"[0-9]{2}\.[0-9]{2}\.[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}")
INPUT_FORMAT = "%d.%m.%Y %H:%M"
OUTPUT_FORMAT = "%d.%m.%Y %H:%M:%S"
MESSAGE_KEYS = {"id", "status", "sent_at", "client"}
USER_KEYS = {"phone_number", "operator_code", "tag", "time_zone"}


# --- helpers --------------------------------------------------------------------------------


def local_now(tz: str = OPERATOR_TZ) -> datetime:
    return datetime.now(ZoneInfo(tz))


def slot(days: int = 2, hour: int = 10, minute: int = 0, tz: str = OPERATOR_TZ) -> datetime:
    """A whole minute some days ahead, in zone ``tz``."""
    return (local_now(tz) + timedelta(days=days)).replace(hour=hour, minute=minute, second=0, microsecond=0)


def fmt(moment: datetime) -> str:
    return moment.strftime(INPUT_FORMAT)


START = fmt(slot(days=2, hour=10))
END = fmt(slot(days=2, hour=11))


def create_args(**override: str | None) -> list[str]:
    """`mailings create` options, valid by default; an override of None drops the option."""
    values: dict[str, str | None] = {
        "--message": "New cool python tip",
        "--tag": "python-tips",
        "--operator-code": "911",
        "--start": START,
        "--end": END,
    }
    for key, value in override.items():
        values["--" + key.replace("_", "-")] = value
    args: list[str] = ["mailings", "create"]
    for option, value in values.items():
        if value is not None:
            args += [option, value]
    return args


def body(**override: object) -> dict:
    """The SPEC's JSON body, valid by default."""
    data: dict = {
        "filter": {"operator_code": "911", "tag": "python-tips"},
        "message": "New cool python tip",
        "start_at": START,
        "end_at": END,
    }
    data.update(override)
    return data


def write_json(tmp_path: Path, data: object, name: str = "mailing.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def parse_output_time(text: str, tz: str = OPERATOR_TZ) -> datetime:
    return datetime.strptime(text, OUTPUT_FORMAT).replace(tzinfo=ZoneInfo(tz))


def stored_utc(cli, mailing_id: int, column: str) -> datetime:
    (value,) = cli.sql(f"SELECT {column} FROM mailings WHERE id = ?", (mailing_id,))[0]
    moment = datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def assert_listed_shape(mailing: dict) -> None:
    """The SPEC's listed mailing: every key present, with the right types and formats (extras allowed)."""
    assert {"id", "message", "start_at", "end_at", "filter", "message_count"} <= set(mailing)
    assert isinstance(mailing["id"], int) and not isinstance(mailing["id"], bool)
    assert isinstance(mailing["message"], str)
    for key in ("start_at", "end_at"):
        assert OUTPUT_TIME_RE.fullmatch(mailing[key]), f"{key}={mailing[key]!r}"
    assert {"operator_code", "tag"} <= set(mailing["filter"])
    assert isinstance(mailing["filter"]["operator_code"], str)
    assert isinstance(mailing["filter"]["tag"], str)
    counts = mailing["message_count"]
    assert {"not_sent", "sent", "failed"} <= set(counts)
    assert all(isinstance(counts[k], int) for k in ("not_sent", "sent", "failed"))


def assert_message_shape(message: dict) -> None:
    assert MESSAGE_KEYS <= set(message)
    assert isinstance(message["id"], int)
    assert message["status"] in ("not_sent", "sent", "failed")
    assert message["sent_at"] is None or OUTPUT_TIME_RE.fullmatch(message["sent_at"])
    assert set(message["client"]) == USER_KEYS


def assert_rejected(result, field: str) -> str:
    assert result.exit_code == 2, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert field in lines[0], f"{field!r} not named in {lines[0]!r}"
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    return lines[0]


def materialize_audience(cli, mailing_id: int) -> int:
    """Create the mailing's messages as a delivery run would, through the core function."""
    ((mid, code, key),) = cli.sql("SELECT id, operator_code, tag_key FROM mailings WHERE id = ?", (mailing_id,))
    db = open_database(load_settings())
    try:
        with db.write() as conn:
            return materialize(conn, {"id": mid, "operator_code": code, "tag_key": key}, datetime.now(UTC))
    finally:
        db.close()


@pytest.fixture
def seeded(cli):
    """A home with a user and a mailing, so that the database exists before a rejected command."""
    cli.ok("users", "add", "79990000001", "--tag", "seed")
    cli.ok(*create_args(message="seed"))
    return cli


# --- create ---------------------------------------------------------------------------------


def test_create_with_options_prints_the_listed_shape(cli):
    mailing = cli.json(*create_args())
    assert_listed_shape(mailing)
    assert mailing["message"] == "New cool python tip"
    assert mailing["filter"] == {"operator_code": "911", "tag": "python-tips"}
    assert mailing["start_at"] == START + ":00"
    assert mailing["end_at"] == END + ":00"
    assert mailing["message_count"] == {"not_sent": 0, "sent": 0, "failed": 0}


def test_create_table_mode_shows_the_mailing(cli):
    out = cli.ok(*create_args()).stdout
    assert "New cool python tip" in out
    assert "python-tips" in out
    assert START in out


def test_create_accepts_seconds(cli):
    start = slot(days=3, hour=8).replace(second=0).strftime(OUTPUT_FORMAT)
    end = slot(days=3, hour=9).replace(second=0).strftime("%d.%m.%Y %H:%M") + ":30"
    mailing = cli.json(*create_args(start=start, end=end))
    assert mailing["start_at"] == start
    assert mailing["end_at"] == end


def test_create_from_input_file(cli, tmp_path):
    mailing = cli.json("mailings", "create", "--input", write_json(tmp_path, body()))
    assert_listed_shape(mailing)
    assert mailing["message"] == "New cool python tip"
    assert mailing["filter"] == {"operator_code": "911", "tag": "python-tips"}
    assert (mailing["start_at"], mailing["end_at"]) == (START + ":00", END + ":00")


def test_create_from_stdin(cli):
    mailing = cli.json("mailings", "create", "--input", "-", input=json.dumps(body(message="from stdin")))
    assert mailing["message"] == "from stdin"
    assert mailing["filter"] == {"operator_code": "911", "tag": "python-tips"}


def test_create_from_input_keeps_the_filter_tag_as_entered(cli, tmp_path):
    data = body(filter={"operator_code": "953", "tag": "Java-Tips"})
    mailing = cli.json("mailings", "create", "--input", write_json(tmp_path, data))
    assert mailing["filter"] == {"operator_code": "953", "tag": "Java-Tips"}


def test_create_from_input_with_window_in_the_body(cli, tmp_path):
    mailing = cli.json("mailings", "create", "--input", write_json(tmp_path, body(window="09:00-21:00")))
    assert mailing["window"] == "09:00-21:00"


def test_created_mailing_is_listed_the_same(cli):
    created = cli.json(*create_args())
    (listed,) = cli.json("mailings", "list")
    assert_listed_shape(listed)
    for key in ("id", "message", "start_at", "end_at", "filter", "message_count"):
        assert listed[key] == created[key]


# --- times in the operator's zone -----------------------------------------------------------


def test_times_are_read_in_the_operator_zone(cli):
    wall = slot(days=5, hour=10, tz="Asia/Vladivostok").replace(tzinfo=None)
    start, end = fmt(wall), fmt(wall + timedelta(hours=2))
    vlad = json.loads(cli.ok(*create_args(start=start, end=end), "--json", env={"MAILCLI_TZ": "Asia/Vladivostok"}).stdout)
    msk = json.loads(cli.ok(*create_args(start=start, end=end), "--json", env={"MAILCLI_TZ": "Europe/Moscow"}).stdout)

    # stored in UTC: the same wall-clock time is a different instant in each zone
    expected_vlad = wall.replace(tzinfo=ZoneInfo("Asia/Vladivostok")).astimezone(UTC)
    expected_msk = wall.replace(tzinfo=ZoneInfo("Europe/Moscow")).astimezone(UTC)
    assert stored_utc(cli, vlad["id"], "start_at") == expected_vlad
    assert stored_utc(cli, msk["id"], "start_at") == expected_msk
    assert stored_utc(cli, msk["id"], "start_at") - stored_utc(cli, vlad["id"], "start_at") == timedelta(hours=7)
    assert stored_utc(cli, vlad["id"], "end_at") == expected_vlad + timedelta(hours=2)

    # shown back in whichever zone the operator is in now
    by_id = {m["id"]: m for m in json.loads(cli.ok("mailings", "list", "--json", env={"MAILCLI_TZ": "Asia/Vladivostok"}).stdout)}
    assert by_id[vlad["id"]]["start_at"] == start + ":00"
    assert by_id[msk["id"]]["start_at"] == fmt(expected_msk.astimezone(ZoneInfo("Asia/Vladivostok"))) + ":00"
    by_id = {m["id"]: m for m in cli.json("mailings", "list")}  # Europe/Moscow
    assert by_id[msk["id"]]["start_at"] == start + ":00"
    assert by_id[vlad["id"]]["start_at"] == fmt(expected_vlad.astimezone(ZoneInfo("Europe/Moscow"))) + ":00"
    assert by_id[vlad["id"]]["end_at"] == fmt((expected_vlad + timedelta(hours=2)).astimezone(ZoneInfo("Europe/Moscow"))) + ":00"


def test_input_times_are_read_in_the_operator_zone(cli, tmp_path):
    wall = slot(days=5, hour=10, tz="Asia/Vladivostok").replace(tzinfo=None)
    data = body(start_at=fmt(wall), end_at=fmt(wall + timedelta(hours=1)))
    result = cli.ok("mailings", "create", "--input", write_json(tmp_path, data), "--json", env={"MAILCLI_TZ": "Asia/Vladivostok"})
    mailing = json.loads(result.stdout)
    assert stored_utc(cli, mailing["id"], "start_at") == wall.replace(tzinfo=ZoneInfo("Asia/Vladivostok")).astimezone(UTC)


RELATIVE = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def offset_of(text: str) -> timedelta:
    if text.lower() == "now":
        return timedelta(0)
    return timedelta(**{RELATIVE[text[-1]]: int(text[1:-1])})


@pytest.mark.parametrize(
    ("start", "end"),
    [("now", "+90m"), ("now", "+1d"), ("+1h", "+2h"), ("+30s", "+1h"), ("NOW", "+2h")],
)
def test_relative_times_on_the_command_line(cli, start, end):
    before = datetime.now(UTC)
    mailing = cli.json(*create_args(start=start, end=end))
    after = datetime.now(UTC)
    for column, text in (("start_at", start), ("end_at", end)):
        moment = stored_utc(cli, mailing["id"], column)
        assert before - timedelta(seconds=1) + offset_of(text) <= moment <= after + offset_of(text), column
        shown = parse_output_time(mailing[column]).astimezone(UTC)
        assert abs(shown - moment) < timedelta(seconds=1)
    assert stored_utc(cli, mailing["id"], "end_at") - stored_utc(cli, mailing["id"], "start_at") == offset_of(end) - offset_of(start)


def test_now_starts_the_mailing_right_away(cli):
    before = datetime.now(UTC)
    mailing = cli.json(*create_args(start="now", end="+1h"))
    start_at = stored_utc(cli, mailing["id"], "start_at")
    assert before - timedelta(seconds=1) <= start_at <= datetime.now(UTC)
    assert mailing.get("state", "active") == "active"


def test_start_inside_the_current_minute_is_accepted(cli):
    for _attempt in range(3):  # the minute may turn between formatting it and the command reading the clock
        minute = fmt(local_now())
        result = cli(*create_args(start=minute, end="+1h"), "--json")
        if result.exit_code == 0:
            assert json.loads(result.stdout)["start_at"] == minute + ":00"
            return
        if fmt(local_now()) == minute:
            break
    raise AssertionError(f"a start in the current minute was rejected: {result.stderr}")


# --- create: rejections ---------------------------------------------------------------------

PAST = fmt(local_now() - timedelta(days=1))
BAD_TIME_FORMS = ["2022-12-20 16:10", "20/12/2022 16:10", "31.02.2027 10:00", "20.12.2027 25:00", "20.12.2027 10:60",
                  "20.12.2027", "tomorrow", "+5", "+5w", "-1h", "1.2.2027 10:00"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        pytest.param({"start": PAST}, "start_at", id="start-in-the-past"),
        pytest.param({"start": PAST, "end": fmt(local_now() - timedelta(hours=1))}, "_at", id="both-in-the-past"),
        pytest.param({"start": END, "end": START}, "end_at", id="end-before-start"),
        pytest.param({"start": START, "end": START}, "end_at", id="end-equal-start"),
        pytest.param({"start": "now", "end": PAST}, "end_at", id="end-in-the-past"),
        *[pytest.param({"start": form}, "start_at", id=f"start-{form}") for form in BAD_TIME_FORMS],
        *[pytest.param({"end": form}, "end_at", id=f"end-{form}") for form in BAD_TIME_FORMS],
        pytest.param({"message": None}, "message", id="missing-message"),
        pytest.param({"tag": None}, "tag", id="missing-tag"),
        pytest.param({"operator_code": None}, "operator_code", id="missing-operator-code"),
        pytest.param({"start": None}, "start", id="missing-start"),
        pytest.param({"end": None}, "end", id="missing-end"),
        pytest.param({"message": ""}, "message", id="empty-message"),
        pytest.param({"message": "   "}, "message", id="blank-message"),
        pytest.param({"tag": ""}, "tag", id="empty-tag"),
        pytest.param({"tag": "  "}, "tag", id="blank-tag"),
        pytest.param({"operator_code": "91"}, "operator_code", id="code-2-digits"),
        pytest.param({"operator_code": "9111"}, "operator_code", id="code-4-digits"),
        pytest.param({"operator_code": "abc"}, "operator_code", id="code-letters"),
        pytest.param({"operator_code": ""}, "operator_code", id="code-empty"),
        pytest.param({"window": "25:00-26:00"}, "window", id="window-hours-out-of-range"),
        pytest.param({"window": "10:00-10:00"}, "window", id="window-empty"),
        pytest.param({"window": "9-17"}, "window", id="window-bad-form"),
        pytest.param({"window": "10:00"}, "window", id="window-one-time"),
    ],
)
def test_create_rejects_invalid_options(seeded, override, field):
    before = seeded.snapshot()
    assert_rejected(seeded(*create_args(**override)), field)
    assert seeded.snapshot() == before


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param(body(filter={"operator_code": "911"}), "filter.tag", id="missing-filter-tag"),
        pytest.param(body(filter={"tag": "python-tips"}), "filter.operator_code", id="missing-filter-code"),
        pytest.param({k: v for k, v in body().items() if k != "filter"}, "filter", id="missing-filter"),
        pytest.param({k: v for k, v in body().items() if k != "message"}, "message", id="missing-message"),
        pytest.param({k: v for k, v in body().items() if k != "start_at"}, "start_at", id="missing-start"),
        pytest.param({k: v for k, v in body().items() if k != "end_at"}, "end_at", id="missing-end"),
        pytest.param(body(message=""), "message", id="empty-message"),
        pytest.param(body(filter={"operator_code": "911", "tag": ""}), "tag", id="empty-tag"),
        pytest.param(body(filter={"operator_code": "91", "tag": "x"}), "operator_code", id="code-2-digits"),
        pytest.param(body(priority="high"), "priority", id="unknown-field"),
        pytest.param(body(filter={"operator_code": "911", "tag": "x", "region": "spb"}), "region", id="unknown-filter-field"),
        pytest.param(body(start_at="now"), "start_at", id="start-now"),
        pytest.param(body(start_at="+90m"), "start_at", id="start-relative"),
        pytest.param(body(end_at="+1d"), "end_at", id="end-relative"),
        pytest.param(body(start_at="2022-12-20 16:10"), "start_at", id="start-iso"),
        pytest.param(body(start_at=PAST), "start_at", id="start-in-the-past"),
        pytest.param(body(start_at=END, end_at=START), "end_at", id="end-before-start"),
        pytest.param(body(end_at=START), "end_at", id="end-equal-start"),
        pytest.param(body(window="10:00-10:00"), "window", id="bad-window"),
        pytest.param([body()], "input", id="array-not-object"),
    ],
)
def test_create_from_input_rejects_invalid_bodies(seeded, tmp_path, data, field):
    before = seeded.snapshot()
    assert_rejected(seeded("mailings", "create", "--input", write_json(tmp_path, data)), field)
    assert seeded.snapshot() == before


def test_create_from_stdin_rejects_relative_times(seeded):
    before = seeded.snapshot()
    assert_rejected(seeded("mailings", "create", "--input", "-", input=json.dumps(body(start_at="now"))), "start_at")
    assert seeded.snapshot() == before


def test_create_from_input_rejects_invalid_json(seeded, tmp_path):
    before = seeded.snapshot()
    path = tmp_path / "broken.json"
    path.write_text('{"message": "hi",', encoding="utf-8")
    assert_rejected(seeded("mailings", "create", "--input", str(path)), "input")
    assert seeded.snapshot() == before


def test_create_rejects_input_together_with_message(seeded, tmp_path):
    before = seeded.snapshot()
    result = seeded("mailings", "create", "--input", write_json(tmp_path, body()), "--message", "other")
    line = assert_rejected(result, "input")
    assert "--message" in line
    assert seeded.snapshot() == before


def test_create_from_a_missing_input_file_is_an_operational_error(seeded, tmp_path):
    before = seeded.snapshot()
    result = seeded("mailings", "create", "--input", str(tmp_path / "nope.json"))
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nope.json" in result.stderr
    assert seeded.snapshot() == before


def last_sunday_of_march_after(moment: datetime) -> date:
    year = moment.year
    while True:
        day = date(year, 3, 31)
        day -= timedelta(days=(day.weekday() - 6) % 7)
        if day > moment.date() + timedelta(days=1):
            return day
        year += 1


def test_create_rejects_a_time_skipped_by_daylight_saving(seeded):
    berlin = {"MAILCLI_TZ": "Europe/Berlin"}
    day = last_sunday_of_march_after(local_now("Europe/Berlin")).strftime("%d.%m.%Y")
    before = seeded.snapshot()
    result = seeded(*create_args(start=f"{day} 02:30", end=f"{day} 05:00"), env=berlin)
    assert_rejected(result, "start_at")
    assert seeded.snapshot() == before
    # the same day outside the gap is fine
    seeded.ok(*create_args(start=f"{day} 01:30", end=f"{day} 03:30"), env=berlin)


@pytest.mark.parametrize(
    ("zone", "override", "field"),
    [
        ("America/New_York", {"end": "31.12.9999 23:59"}, "end_at"),
        ("Asia/Tokyo", {"start": "01.01.0001 00:30"}, "start_at"),
    ],
    ids=["end-at-the-end-of-the-calendar", "start-at-the-beginning-of-the-calendar"],
)
def test_create_at_the_edge_of_the_calendar_is_not_an_unexpected_failure(seeded, zone, override, field):
    """A well-formed time whose UTC instant falls outside the calendar is invalid input, not a crash."""
    before = seeded.snapshot()
    result = seeded(*create_args(**{"start": "now", **override}), env={"MAILCLI_TZ": zone})
    assert "unexpected" not in result.stderr
    assert result.exit_code in (0, 2), result.stderr
    if result.exit_code == 2:
        assert_rejected(result, field)
        assert seeded.snapshot() == before


def test_a_mailing_ending_far_ahead_lists_in_every_zone(cli):
    result = cli(*create_args(start="now", end="31.12.9999 23:59"), "--json")
    if result.exit_code == 2:  # refusing such an end is fine too, as long as it is said clearly
        assert_rejected(result, "end_at")
        return
    assert result.exit_code == 0, result.stderr
    mailing_id = str(json.loads(result.stdout)["id"])
    for zone in ("Europe/Moscow", "Pacific/Kiritimati", "America/New_York"):
        env = {"MAILCLI_TZ": zone}
        listed = cli("mailings", "list", "--json", env=env)
        assert listed.exit_code == 0, f"{zone}: {listed.stderr}"
        shown = cli("mailings", "show", mailing_id, "--json", env=env)
        assert shown.exit_code == 0, f"{zone}: {shown.stderr}"


def test_window_crossing_midnight_is_accepted_and_shown_back(cli):
    created = cli.json(*create_args(window="22:00-06:00"))
    assert created["window"] == "22:00-06:00"
    (listed,) = cli.json("mailings", "list")
    assert listed["window"] == "22:00-06:00"
    assert cli.json("mailings", "show", str(created["id"]))["window"] == "22:00-06:00"
    assert "22:00-06:00" in cli.ok("mailings", "list").stdout


def test_window_option_applies_to_input_body(cli, tmp_path):
    mailing = cli.json("mailings", "create", "--input", write_json(tmp_path, body()), "--window", "09:00-18:00")
    assert mailing["window"] == "09:00-18:00"


# --- list and show --------------------------------------------------------------------------


def test_list_empty(cli):
    assert cli.json("mailings", "list") == []
    result = cli.ok("mailings", "list")
    assert "Traceback" not in result.stderr


def test_list_several_in_order(cli):
    ids = [cli.json(*create_args(message=f"message {n}", tag=f"tag-{n}"))["id"] for n in range(3)]
    listed = cli.json("mailings", "list")
    assert [m["id"] for m in listed] == ids
    assert [m["message"] for m in listed] == ["message 0", "message 1", "message 2"]
    assert [m["filter"]["tag"] for m in listed] == ["tag-0", "tag-1", "tag-2"]
    for mailing in listed:
        assert_listed_shape(mailing)
        assert mailing["message_count"] == {"not_sent": 0, "sent": 0, "failed": 0}
    table = cli.ok("mailings", "list").stdout
    for tag in ("tag-0", "tag-1", "tag-2"):
        assert tag in table


def test_show_one_mailing(cli):
    cli.ok(*create_args(message="first"))
    second = cli.json(*create_args(message="second"))
    shown = cli.json("mailings", "show", str(second["id"]))
    assert_listed_shape(shown)
    assert shown["id"] == second["id"]
    assert shown["message"] == "second"
    assert "second" in cli.ok("mailings", "show", str(second["id"])).stdout


@pytest.mark.parametrize("mailing_id", ["99", "0", "abc"])
def test_show_unknown_id_is_rejected(seeded, mailing_id):
    result = seeded("mailings", "show", mailing_id)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""


@pytest.fixture
def audience(cli):
    """Five users; three of them match 911 / python-tips ignoring the case of the tag."""
    cli.ok("users", "add", "79110000001", "--tag", "Python-tips")
    cli.ok("users", "add", "79110000002", "--tag", "python-tips", "--tz", "Asia/Tokyo")
    cli.ok("users", "add", "79110000003", "--tag", "PYTHON-TIPS")
    cli.ok("users", "add", "79530000004", "--tag", "python-tips")  # another operator
    cli.ok("users", "add", "79110000005", "--tag", "java-tips")  # another tag
    return cli


MATCHING = {"79110000001", "79110000002", "79110000003"}


def test_show_counts_the_current_audience_ignoring_tag_case(audience):
    mailing = audience.json(*create_args(tag="python-tips"))
    assert audience.json("mailings", "show", str(mailing["id"]))["audience"] == 3
    other = audience.json(*create_args(tag="PyThOn-TiPs", operator_code="953"))
    assert audience.json("mailings", "show", str(other["id"]))["audience"] == 1
    nobody = audience.json(*create_args(tag="rust", operator_code="911"))
    assert audience.json("mailings", "show", str(nobody["id"]))["audience"] == 0


def test_show_audience_follows_users_joining_and_leaving(audience):
    mailing_id = str(audience.json(*create_args(tag="python-tips"))["id"])
    audience.ok("users", "add", "79110000006", "--tag", "Python-Tips")
    assert audience.json("mailings", "show", mailing_id)["audience"] == 4
    audience.ok("users", "remove", "79110000001")
    assert audience.json("mailings", "show", mailing_id)["audience"] == 3
    audience.ok("users", "update", "79110000002", "--tag", "go")
    assert audience.json("mailings", "show", mailing_id)["audience"] == 2


# --- stats ----------------------------------------------------------------------------------


def test_stats_of_a_mailing_without_messages_is_empty(seeded):
    (mailing,) = seeded.json("mailings", "list")
    assert seeded.json("mailings", "stats", str(mailing["id"])) == []
    assert seeded.json("mailings", "stats", str(mailing["id"]), "--status", "sent") == []
    assert seeded.ok("mailings", "stats", str(mailing["id"])).exit_code == 0


@pytest.mark.parametrize("status", ["delivered", "SENT", "queued", ""])
def test_stats_rejects_an_unknown_status(seeded, status):
    (mailing,) = seeded.json("mailings", "list")
    for extra in ([], ["--json"]):
        result = seeded("mailings", "stats", str(mailing["id"]), "--status", status, *extra)
        assert_rejected(result, "status")


def test_stats_of_an_unknown_mailing_is_rejected(seeded):
    assert_rejected(seeded("mailings", "stats", "99", "--json"), "99")


def test_stats_lists_one_not_sent_message_per_matching_user(audience):
    mailing_id = audience.json(*create_args(start="now", end="+1h"))["id"]
    assert materialize_audience(audience, mailing_id) == 3
    messages = audience.json("mailings", "stats", str(mailing_id))
    assert len(messages) == 3
    for message in messages:
        assert_message_shape(message)
        assert message["status"] == "not_sent"
        assert message["sent_at"] is None
    assert len({m["id"] for m in messages}) == 3
    clients = {m["client"]["phone_number"]: m["client"] for m in messages}
    assert set(clients) == MATCHING
    assert clients["79110000001"] == {
        "phone_number": "79110000001",
        "operator_code": "911",
        "tag": "Python-tips",
        "time_zone": "Europe/Moscow",
    }
    assert clients["79110000002"]["time_zone"] == "Asia/Tokyo"

    (listed,) = audience.json("mailings", "list")
    assert listed["message_count"] == {"not_sent": 3, "sent": 0, "failed": 0}
    shown = audience.json("mailings", "show", str(mailing_id))
    assert shown["message_count"] == {"not_sent": 3, "sent": 0, "failed": 0}


def test_stats_filters_by_status(audience):
    mailing_id = str(audience.json(*create_args(start="now", end="+1h"))["id"])
    materialize_audience(audience, int(mailing_id))
    assert len(audience.json("mailings", "stats", mailing_id, "--status", "not_sent")) == 3
    assert audience.json("mailings", "stats", mailing_id, "--status", "sent") == []
    assert audience.json("mailings", "stats", mailing_id, "--status", "failed") == []


def test_stats_table_shows_the_messages(audience):
    mailing_id = str(audience.json(*create_args(start="now", end="+1h"))["id"])
    materialize_audience(audience, int(mailing_id))
    out = audience.ok("mailings", "stats", mailing_id).stdout
    for phone in MATCHING:
        assert phone in out
    assert "not_sent" in out


def test_a_removed_user_keeps_their_message_in_the_history(audience):
    mailing_id = audience.json(*create_args(start="now", end="+1h"))["id"]
    materialize_audience(audience, mailing_id)
    before = {m["client"]["phone_number"]: m for m in audience.json("mailings", "stats", str(mailing_id))}

    audience.ok("users", "remove", "79110000001")

    after = {m["client"]["phone_number"]: m for m in audience.json("mailings", "stats", str(mailing_id))}
    assert set(after) == MATCHING  # history kept
    removed = after["79110000001"]
    assert removed["id"] == before["79110000001"]["id"]
    assert removed["status"] == "not_sent"
    assert removed["sent_at"] is None
    assert removed["client"]["tag"] == "Python-tips"
    (listed,) = audience.json("mailings", "list")
    assert listed["message_count"] == {"not_sent": 3, "sent": 0, "failed": 0}
    assert audience.json("mailings", "show", str(mailing_id))["audience"] == 2

    # the next look at the audience does not bring them back, but does pick up a newcomer
    assert materialize_audience(audience, mailing_id) == 0
    audience.ok("users", "add", "79110000009", "--tag", "Python-TIPS")
    assert materialize_audience(audience, mailing_id) == 1
    phones = [m["client"]["phone_number"] for m in audience.json("mailings", "stats", str(mailing_id))]
    assert sorted(phones) == sorted([*MATCHING, "79110000009"])


def test_message_counts_are_per_mailing(audience):
    first = audience.json(*create_args(start="now", end="+1h"))["id"]
    second = audience.json(*create_args(start="now", end="+1h", tag="java-tips"))["id"]
    audience.json(*create_args(start="now", end="+1h", tag="nobody"))
    materialize_audience(audience, first)
    materialize_audience(audience, second)
    counts = [m["message_count"]["not_sent"] for m in audience.json("mailings", "list")]
    assert counts == [3, 1, 0]


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_marks_the_mailing_cancelled(seeded):
    (mailing,) = seeded.json("mailings", "list")
    cancelled = seeded.json("mailings", "cancel", str(mailing["id"]))
    assert cancelled["id"] == mailing["id"]
    assert cancelled["state"] == "cancelled"
    assert_listed_shape(cancelled)
    (listed,) = seeded.json("mailings", "list")
    assert listed["state"] == "cancelled"
    assert seeded.json("mailings", "show", str(mailing["id"]))["state"] == "cancelled"


def test_cancel_twice_is_fine_with_a_note(seeded):
    (mailing,) = seeded.json("mailings", "list")
    seeded.ok("mailings", "cancel", str(mailing["id"]))
    before = seeded.snapshot()
    result = seeded.ok("mailings", "cancel", str(mailing["id"]), "--json")
    assert "already" in result.stderr
    assert json.loads(result.stdout)["state"] == "cancelled"
    assert seeded.snapshot() == before


def test_cancel_unknown_mailing_is_rejected(seeded):
    before = seeded.snapshot()
    assert_rejected(seeded("mailings", "cancel", "42"), "42")
    assert seeded.snapshot() == before


def test_cancel_keeps_the_messages_and_their_counts(audience):
    mailing_id = audience.json(*create_args(start="now", end="+1h"))["id"]
    materialize_audience(audience, mailing_id)
    cancelled = audience.json("mailings", "cancel", str(mailing_id))
    assert cancelled["message_count"] == {"not_sent": 3, "sent": 0, "failed": 0}
    messages = audience.json("mailings", "stats", str(mailing_id))
    assert {m["status"] for m in messages} == {"not_sent"}
    assert len(messages) == 3

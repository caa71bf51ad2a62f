"""``mailcli users``: add, list, update, remove and import, driven as an operator would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

USER_KEYS = {"phone_number", "operator_code", "tag", "time_zone"}
SUMMARY_KEYS = {"rows", "added", "updated", "skipped", "invalid"}


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_rejected(result, field: str, exit_code: int = 2) -> str:
    """Exit code, a single stderr line naming the field, no traceback, no data on stdout."""
    assert result.exit_code == exit_code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    lines = error_lines(result)
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert field in lines[0], f"{field!r} not named in {lines[0]!r}"
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    return lines[0]


def phones(cli, *args: str) -> list[str]:
    return [u["phone_number"] for u in cli.json("users", "list", *args)]


def users_by_phone(cli) -> dict[str, dict]:
    return {u["phone_number"]: u for u in cli.json("users", "list")}


@pytest.fixture
def seeded(cli):
    """A home with one registered user, so that the database exists before a rejected command."""
    cli.ok("users", "add", "79990000001", "--tag", "seed")
    return cli


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- users add ------------------------------------------------------------------------------


def test_add_prints_exactly_the_spec_user_shape(cli):
    user = cli.json("users", "add", "79114048095", "--tag", "python-tips", "--tz", "Asia/Vladivostok")
    assert user == {
        "phone_number": "79114048095",
        "operator_code": "911",
        "tag": "python-tips",
        "time_zone": "Asia/Vladivostok",
    }


def test_add_derives_operator_code_from_the_three_digits_after_7(cli):
    user = cli.json("users", "add", "79531234567", "--tag", "x")
    assert user["operator_code"] == "953"
    assert set(user) == USER_KEYS


def test_add_without_tz_uses_the_operator_zone(cli):
    assert cli.json("users", "add", "79114048095", "--tag", "x")["time_zone"] == "Europe/Moscow"
    other = cli.json("users", "add", "79114048096", "--tag", "x", env={"MAILCLI_TZ": "Asia/Tokyo"})
    assert other["time_zone"] == "Asia/Tokyo"


def test_add_keeps_the_tag_as_entered(cli):
    assert cli.json("users", "add", "79114048095", "--tag", "Python-Tips")["tag"] == "Python-Tips"
    assert users_by_phone(cli)["79114048095"]["tag"] == "Python-Tips"


def test_add_table_mode_shows_the_user(cli):
    out = cli.ok("users", "add", "79114048095", "--tag", "python-tips").stdout
    for value in ("79114048095", "911", "python-tips", "Europe/Moscow"):
        assert value in out


@pytest.mark.parametrize(
    ("phone", "hint"),
    [
        pytest.param("7911404809", None, id="too-short"),
        pytest.param("791140480951", None, id="too-long"),
        pytest.param("89114048095", "79114048095", id="leading-8"),
        pytest.param("+7 911 655-13-68", "79116551368", id="formatted"),
        pytest.param("+79114048095", "79114048095", id="plus-sign"),
        pytest.param("7911abc4809", None, id="letters"),
        pytest.param("", None, id="empty"),
        pytest.param("69114048095", None, id="first-digit-not-7"),
    ],
)
def test_add_rejects_bad_phone_forms(seeded, phone, hint):
    before = seeded.snapshot()
    line = assert_rejected(seeded("users", "add", phone, "--tag", "x"), "phone_number")
    if hint:
        assert hint in line
    assert seeded.snapshot() == before


@pytest.mark.parametrize("tag", ["", "   "], ids=["empty", "blank"])
def test_add_rejects_empty_tag(seeded, tag):
    before = seeded.snapshot()
    assert_rejected(seeded("users", "add", "79114048095", "--tag", tag), "tag")
    assert seeded.snapshot() == before


def test_add_requires_a_tag(seeded):
    before = seeded.snapshot()
    result = seeded("users", "add", "79114048095")
    assert result.exit_code == 2
    assert "tag" in result.stderr
    assert seeded.snapshot() == before


def test_add_rejects_unknown_zone(seeded):
    before = seeded.snapshot()
    assert_rejected(seeded("users", "add", "79114048095", "--tag", "x", "--tz", "Mars/Olympus"), "time_zone")
    assert seeded.snapshot() == before


def test_add_rejects_an_explicitly_empty_zone(seeded):
    # `--tz ""` (e.g. a script's unset $ZONE) is not a zone name; `users update --tz ""` rejects it too
    before = seeded.snapshot()
    assert_rejected(seeded("users", "add", "79114048095", "--tag", "x", "--tz", ""), "time_zone")
    assert seeded.snapshot() == before


@pytest.mark.parametrize(("typed", "canonical"), [("europe/moscow", "Europe/Moscow"), ("ASIA/TOKYO", "Asia/Tokyo")])
def test_add_rejects_zone_in_wrong_case_with_a_hint(seeded, typed, canonical):
    before = seeded.snapshot()
    line = assert_rejected(seeded("users", "add", "79114048095", "--tag", "x", "--tz", typed), "time_zone")
    assert canonical in line
    assert seeded.snapshot() == before


def test_add_rejects_a_duplicate_phone(seeded):
    seeded.ok("users", "add", "79114048095", "--tag", "first")
    before = seeded.snapshot()
    assert_rejected(seeded("users", "add", "79114048095", "--tag", "second"), "phone_number")
    assert seeded.snapshot() == before
    assert users_by_phone(seeded)["79114048095"]["tag"] == "first"


# --- users list -----------------------------------------------------------------------------


@pytest.fixture
def population(cli):
    cli.ok("users", "add", "79110000001", "--tag", "Python-tips")
    cli.ok("users", "add", "79110000002", "--tag", "java-tips", "--tz", "Asia/Tokyo")
    cli.ok("users", "add", "79530000003", "--tag", "python-tips")
    cli.ok("users", "add", "79530000004", "--tag", "PYTHON-TIPS")
    cli.ok("users", "add", "79110000005", "--tag", "go")
    return cli


def test_list_empty(cli):
    assert cli.json("users", "list") == []
    assert cli.ok("users", "list").stderr == ""


def test_list_json_gives_spec_users_in_the_order_added(population):
    users = population.json("users", "list")
    assert [u["phone_number"] for u in users] == [
        "79110000001",
        "79110000002",
        "79530000003",
        "79530000004",
        "79110000005",
    ]
    assert all(set(u) == USER_KEYS for u in users)
    assert users[1] == {
        "phone_number": "79110000002",
        "operator_code": "911",
        "tag": "java-tips",
        "time_zone": "Asia/Tokyo",
    }


def test_list_table_shows_every_user(population):
    result = population.ok("users", "list")
    for phone in ("79110000001", "79110000002", "79530000003", "79530000004", "79110000005"):
        assert phone in result.stdout
    assert "Asia/Tokyo" in result.stdout
    assert "showing" not in result.stderr


@pytest.mark.parametrize("tag", ["python-tips", "Python-Tips", "PYTHON-TIPS"])
def test_list_filters_by_tag_ignoring_case(population, tag):
    assert phones(population, "--tag", tag) == ["79110000001", "79530000003", "79530000004"]


def test_list_filter_keeps_tags_as_entered(population):
    tags = [u["tag"] for u in population.json("users", "list", "--tag", "python-tips")]
    assert tags == ["Python-tips", "python-tips", "PYTHON-TIPS"]


def test_list_filters_by_operator_code(population):
    assert phones(population, "--operator-code", "953") == ["79530000003", "79530000004"]
    assert phones(population, "--operator-code", "999") == []


def test_list_combines_filters(population):
    assert phones(population, "--operator-code", "911", "--tag", "PYTHON-tips") == ["79110000001"]


def test_list_filters_apply_to_the_table_too(population):
    out = population.ok("users", "list", "--operator-code", "953").stdout
    assert "79530000003" in out and "79530000004" in out
    assert "79110000001" not in out


@pytest.mark.parametrize("code", ["91", "9111", "abc"])
def test_list_rejects_a_bad_operator_code(population, code):
    result = population("users", "list", "--operator-code", code, "--json")
    assert result.exit_code == 2
    assert "operator_code" in result.stderr


def test_list_limit_and_offset(population):
    assert phones(population, "--limit", "2") == ["79110000001", "79110000002"]
    assert phones(population, "--limit", "2", "--offset", "2") == ["79530000003", "79530000004"]
    assert phones(population, "--offset", "4") == ["79110000005"]
    assert phones(population, "--offset", "10") == []
    out = population.ok("users", "list", "--limit", "1", "--offset", "1").stdout
    assert "79110000002" in out
    assert "79110000001" not in out and "79530000003" not in out


def test_list_table_notes_on_stderr_when_it_shows_only_part(cli, tmp_path):
    rows = "".join(f"79{n:09d},bulk,Europe/Moscow\n" for n in range(105))
    cli.ok("users", "import", str(write(tmp_path, "bulk.csv", "phone_number,tag,time_zone\n" + rows)))
    result = cli.ok("users", "list")
    assert "105" in result.stderr  # how many there are
    assert "--limit" in result.stderr or "--offset" in result.stderr  # how to see the rest
    assert "79000000104" not in result.stdout  # the note is not data
    # --json lists everything and prints no note
    assert len(cli.json("users", "list")) == 105
    assert cli.ok("users", "list", "--json").stderr == ""


# --- users update ---------------------------------------------------------------------------


def test_update_changes_the_tag(population):
    user = population.json("users", "update", "79110000005", "--tag", "Rust")
    assert user == {"phone_number": "79110000005", "operator_code": "911", "tag": "Rust", "time_zone": "Europe/Moscow"}
    assert phones(population, "--tag", "rust") == ["79110000005"]
    assert phones(population, "--tag", "go") == []


def test_update_changes_the_zone(population):
    user = population.json("users", "update", "79110000005", "--tz", "America/New_York")
    assert user["time_zone"] == "America/New_York"
    assert user["tag"] == "go"
    assert users_by_phone(population)["79110000005"]["time_zone"] == "America/New_York"


def test_update_changes_both(population):
    population.ok("users", "update", "79110000005", "--tag", "c", "--tz", "UTC")
    assert users_by_phone(population)["79110000005"] == {
        "phone_number": "79110000005",
        "operator_code": "911",
        "tag": "c",
        "time_zone": "UTC",
    }


def test_update_with_nothing_to_change_is_rejected(population):
    before = population.snapshot()
    result = population("users", "update", "79110000005")
    assert result.exit_code == 2
    assert len(error_lines(result)) == 1
    assert "--tag" in result.stderr or "tag" in result.stderr
    assert population.snapshot() == before


def test_update_unknown_phone_is_rejected(population):
    before = population.snapshot()
    assert_rejected(population("users", "update", "79119999999", "--tag", "x"), "phone_number")
    assert population.snapshot() == before


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--tag", " "), "tag"),
        (("--tz", "Nowhere/Land"), "time_zone"),
        (("--tag", "ok", "--tz", "europe/moscow"), "time_zone"),
    ],
    ids=["blank-tag", "unknown-zone", "zone-case"],
)
def test_update_rejects_invalid_values_and_changes_nothing(population, args, field):
    before = population.snapshot()
    assert_rejected(population("users", "update", "79110000005", *args), field)
    assert population.snapshot() == before


# --- users remove ---------------------------------------------------------------------------


def test_remove_takes_the_user_out_of_the_list(population):
    result = population.ok("users", "remove", "79110000002")
    assert "79110000002" in result.stderr + result.stdout
    assert "79110000002" not in phones(population)
    assert len(phones(population)) == 4


def test_remove_json_prints_the_removed_user(population):
    removed = population.json("users", "remove", "79110000002")
    assert removed["phone_number"] == "79110000002"
    assert USER_KEYS <= set(removed)


def test_remove_unknown_phone_is_rejected(population):
    before = population.snapshot()
    assert_rejected(population("users", "remove", "79119999999"), "phone_number")
    assert population.snapshot() == before


def test_remove_twice_is_rejected_the_second_time(population):
    population.ok("users", "remove", "79110000002")
    assert population("users", "remove", "79110000002").exit_code == 2


def test_a_removed_phone_can_be_added_again(population):
    population.ok("users", "remove", "79110000002")
    user = population.json("users", "add", "79110000002", "--tag", "back", "--tz", "UTC")
    assert user["tag"] == "back"
    assert users_by_phone(population)["79110000002"] == {
        "phone_number": "79110000002",
        "operator_code": "911",
        "tag": "back",
        "time_zone": "UTC",
    }
    assert phones(population).count("79110000002") == 1


def test_a_removed_user_cannot_be_updated(population):
    population.ok("users", "remove", "79110000002")
    assert population("users", "update", "79110000002", "--tag", "x").exit_code == 2


# --- users import: formats ------------------------------------------------------------------

EXPECTED_TWO = [
    {"phone_number": "79114048095", "operator_code": "911", "tag": "python-tips", "time_zone": "Europe/Moscow"},
    {"phone_number": "79534048096", "operator_code": "953", "tag": "Java", "time_zone": "Asia/Tokyo"},
]

CSV_TWO = "phone_number,tag,time_zone\n79114048095,python-tips,Europe/Moscow\n79534048096,Java,Asia/Tokyo\n"
JSON_ARRAY_TWO = json.dumps(
    [
        {"phone_number": "79114048095", "tag": "python-tips", "time_zone": "Europe/Moscow"},
        {"phone_number": "79534048096", "tag": "Java", "time_zone": "Asia/Tokyo"},
    ],
    indent=2,
)
JSON_USERS_TWO = json.dumps(
    {
        "users": [
            {"phone_number": "79114048095", "tag": "python-tips", "time_zone": "Europe/Moscow"},
            {"phone_number": "79534048096", "tag": "Java", "time_zone": "Asia/Tokyo"},
        ]
    }
)
JSONL_TWO = (
    '{"phone_number": "79114048095", "tag": "python-tips", "time_zone": "Europe/Moscow"}\n'
    '{"phone_number": "79534048096", "tag": "Java", "time_zone": "Asia/Tokyo"}\n'
)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("users.csv", CSV_TWO),
        ("users.json", JSON_ARRAY_TWO),
        ("wrapped.json", JSON_USERS_TWO),
        ("users.jsonl", JSONL_TWO),
        ("users.txt", CSV_TWO),
        ("array.txt", JSON_ARRAY_TWO),
        ("lines.txt", JSONL_TWO),
    ],
)
def test_import_reads_every_format(cli, tmp_path, name, content):
    summary = cli.json("users", "import", str(write(tmp_path, name, content)))
    assert summary == {"rows": 2, "added": 2, "updated": 0, "skipped": 0, "invalid": 0}
    assert cli.json("users", "list") == EXPECTED_TWO


def test_import_single_json_object(cli, tmp_path):
    path = write(tmp_path, "one.json", '{"phone_number": "79114048095", "tag": "solo", "time_zone": "UTC"}\n')
    summary = cli.json("users", "import", str(path))
    assert summary["added"] == 1
    assert cli.json("users", "list") == [
        {"phone_number": "79114048095", "operator_code": "911", "tag": "solo", "time_zone": "UTC"}
    ]


def test_import_single_json_object_spread_over_lines(cli, tmp_path):
    body = json.dumps({"phone_number": "79114048095", "tag": "solo", "time_zone": "UTC"}, indent=2)
    cli.ok("users", "import", str(write(tmp_path, "one.json", body)))
    assert phones(cli) == ["79114048095"]


@pytest.mark.parametrize(
    "content",
    [CSV_TWO, JSON_ARRAY_TWO, JSON_USERS_TWO, JSONL_TWO],
    ids=["csv", "json-array", "json-users", "jsonl"],
)
def test_import_from_stdin(cli, content):
    summary = cli.json("users", "import", "-", input=content)
    assert summary["added"] == 2
    assert cli.json("users", "list") == EXPECTED_TWO


def test_import_csv_columns_in_any_order(cli, tmp_path):
    content = "time_zone,phone_number,tag\nAsia/Tokyo,79534048096,Java\nEurope/Moscow,79114048095,python-tips\n"
    cli.ok("users", "import", str(write(tmp_path, "u.csv", content)))
    assert sorted(cli.json("users", "list"), key=lambda u: u["phone_number"]) == EXPECTED_TWO


def test_import_csv_without_time_zone_column_uses_the_operator_zone(cli, tmp_path):
    content = "tag,phone_number\nx,79114048095\ny,79534048096\n"
    cli.ok("users", "import", str(write(tmp_path, "u.csv", content)), env={"MAILCLI_TZ": "Asia/Vladivostok"})
    assert {u["time_zone"] for u in cli.json("users", "list")} == {"Asia/Vladivostok"}


def test_import_empty_time_zone_cell_uses_the_operator_zone(cli, tmp_path):
    content = "phone_number,tag,time_zone\n79114048095,x,\n"
    cli.ok("users", "import", str(write(tmp_path, "u.csv", content)))
    assert cli.json("users", "list")[0]["time_zone"] == "Europe/Moscow"


def test_import_json_without_time_zone_uses_the_operator_zone(cli, tmp_path):
    cli.ok("users", "import", str(write(tmp_path, "u.json", '[{"phone_number": "79114048095", "tag": "x"}]')))
    assert cli.json("users", "list")[0]["time_zone"] == "Europe/Moscow"


def test_import_accepts_crlf_and_a_bom(cli, tmp_path):
    content = "\ufeffphone_number,tag,time_zone\r\n79114048095,python-tips,Europe/Moscow\r\n79534048096,Java,Asia/Tokyo\r\n"
    cli.ok("users", "import", str(write(tmp_path, "win.csv", content.encode("utf-8"))))
    assert cli.json("users", "list") == EXPECTED_TWO


@pytest.mark.parametrize("content", [JSON_ARRAY_TWO, JSONL_TWO], ids=["json", "jsonl"])
def test_import_json_accepts_crlf_and_a_bom(cli, tmp_path, content):
    data = ("\ufeff" + content.replace("\n", "\r\n")).encode("utf-8")
    cli.ok("users", "import", str(write(tmp_path, "win.dat", data)))
    assert cli.json("users", "list") == EXPECTED_TWO


def test_import_table_summary_goes_to_stdout(cli, tmp_path):
    result = cli.ok("users", "import", str(write(tmp_path, "u.csv", CSV_TWO)))
    assert "2" in result.stdout


def test_import_rejects_an_unknown_csv_column(seeded, tmp_path):
    before = seeded.snapshot()
    content = "phone_number,tag,time_zone,email\n79114048095,x,UTC,a@b.c\n"
    result = seeded("users", "import", str(write(tmp_path, "u.csv", content)))
    assert result.exit_code == 2
    assert "email" in result.stderr
    assert "Traceback" not in result.stderr
    assert seeded.snapshot() == before


def test_import_rejects_an_unknown_json_field(seeded, tmp_path):
    before = seeded.snapshot()
    content = '[{"phone_number": "79114048095", "tag": "x", "email": "a@b.c"}]'
    result = seeded("users", "import", str(write(tmp_path, "u.json", content)))
    assert result.exit_code == 2
    assert "email" in result.stderr
    assert seeded.snapshot() == before


def test_import_nonexistent_file_is_an_operational_error(seeded, tmp_path):
    before = seeded.snapshot()
    result = seeded("users", "import", str(tmp_path / "missing.csv"))
    assert result.exit_code == 1
    assert len(error_lines(result)) == 1
    assert "missing.csv" in result.stderr
    assert "Traceback" not in result.stderr
    assert seeded.snapshot() == before


def test_import_rejects_an_unknown_duplicate_policy(seeded, tmp_path):
    before = seeded.snapshot()
    result = seeded("users", "import", str(write(tmp_path, "u.csv", CSV_TWO)), "--on-duplicate", "merge")
    assert result.exit_code == 2
    assert "duplicate" in result.stderr
    assert seeded.snapshot() == before


# --- users import: all or nothing -----------------------------------------------------------

# Each file: good rows around two bad ones, with the bad rows' line numbers.
BAD_FILES = [
    pytest.param(
        "bad.csv",
        "phone_number,tag,time_zone\n"  # line 1
        "79110000001,a,UTC\n"  # 2
        "89110000002,b,UTC\n"  # 3: bad phone
        "79110000003,c,UTC\n"  # 4
        "79110000004,d,Mars/Base\n"  # 5: bad zone
        "79110000005,e,UTC\n",  # 6
        (3, 5),
        id="csv",
    ),
    pytest.param(
        "bad.json",
        "[\n"  # 1
        '  {"phone_number": "79110000001", "tag": "a"},\n'  # 2
        '  {"phone_number": "89110000002", "tag": "b"},\n'  # 3
        '  {"phone_number": "79110000003", "tag": "c"},\n'  # 4
        '  {"phone_number": "79110000004", "tag": "  "},\n'  # 5: blank tag
        '  {"phone_number": "79110000005", "tag": "e"}\n'  # 6
        "]\n",
        (3, 5),
        id="json-array",
    ),
    pytest.param(
        "bad.jsonl",
        '{"phone_number": "79110000001", "tag": "a"}\n'  # 1
        '{"phone_number": "79110000002", "tag": "b"}\n'  # 2
        '{"phone_number": "7911000000", "tag": "c"}\n'  # 3: too short
        '{"phone_number": "79110000004", "tag": "d"}\n'  # 4
        '{"phone_number": "79110000005", "tag": "e", "time_zone": "nowhere"}\n',  # 5
        (3, 5),
        id="jsonl",
    ),
    pytest.param(
        "bad-users.json",
        '{"users": [\n'  # 1
        '  {"phone_number": "79110000001", "tag": "a"},\n'  # 2
        '  {"phone_number": "79110000002", "tag": "b"},\n'  # 3
        '  {"phone_number": "7911000000x", "tag": "c"},\n'  # 4: letters
        '  {"phone_number": "79110000004", "tag": "d"},\n'  # 5
        '  {"phone_number": "79110000005", "tag": ""}\n'  # 6: empty tag
        "]}\n",
        (4, 6),
        id="json-users-object",
    ),
]


@pytest.mark.parametrize(("name", "content", "bad_lines"), BAD_FILES)
def test_import_is_all_or_nothing_and_names_every_bad_line(seeded, tmp_path, name, content, bad_lines):
    before = seeded.snapshot()
    result = seeded("users", "import", str(write(tmp_path, name, content)))
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    for line in bad_lines:
        assert f"line {line}" in result.stderr, f"line {line} not reported in {result.stderr!r}"
    good_line = 2 if bad_lines[0] != 2 else 1
    assert f"line {good_line}:" not in result.stderr
    assert seeded.snapshot() == before
    assert phones(seeded) == ["79990000001"]


def test_import_all_or_nothing_from_stdin(seeded):
    before = seeded.snapshot()
    content = "phone_number,tag\n79110000001,a\nnope,b\n"
    result = seeded("users", "import", "-", input=content)
    assert result.exit_code == 2
    assert "line 3" in result.stderr
    assert seeded.snapshot() == before


@pytest.mark.parametrize(("name", "content", "bad_lines"), BAD_FILES)
def test_import_skip_invalid_imports_the_good_rows_and_reports_the_bad(cli, tmp_path, name, content, bad_lines):
    result = cli("users", "import", str(write(tmp_path, name, content)), "--skip-invalid", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary == {"rows": 5, "added": 3, "updated": 0, "skipped": 0, "invalid": 2}
    for line in bad_lines:
        assert f"line {line}" in result.stderr
    assert len(phones(cli)) == 3


def test_import_skip_invalid_table_summary(cli, tmp_path):
    result = cli("users", "import", str(write(tmp_path, "u.csv", "phone_number,tag\n79110000001,a\nbad,b\n")), "--skip-invalid")
    assert result.exit_code == 0
    assert "line 3" in result.stderr
    assert "1" in result.stdout
    assert phones(cli) == ["79110000001"]


# --- users import: duplicates ---------------------------------------------------------------

DUP_IN_FILE = "phone_number,tag,time_zone\n79110000001,first,UTC\n79110000002,other,UTC\n79110000001,last,Asia/Tokyo\n"


def test_import_duplicate_inside_file_is_an_error_by_default(seeded, tmp_path):
    before = seeded.snapshot()
    result = seeded("users", "import", str(write(tmp_path, "d.csv", DUP_IN_FILE)))
    assert result.exit_code == 2
    assert "line 4" in result.stderr
    assert "79110000001" in result.stderr
    assert seeded.snapshot() == before


def test_import_duplicate_inside_file_error_policy_explicit(seeded, tmp_path):
    before = seeded.snapshot()
    result = seeded("users", "import", str(write(tmp_path, "d.csv", DUP_IN_FILE)), "--on-duplicate", "error")
    assert result.exit_code == 2
    assert seeded.snapshot() == before


def test_import_duplicate_inside_file_skip_keeps_the_first(cli, tmp_path):
    summary = cli.json("users", "import", str(write(tmp_path, "d.csv", DUP_IN_FILE)), "--on-duplicate", "skip")
    assert summary == {"rows": 3, "added": 2, "updated": 0, "skipped": 1, "invalid": 0}
    user = users_by_phone(cli)["79110000001"]
    assert (user["tag"], user["time_zone"]) == ("first", "UTC")
    assert len(phones(cli)) == 2


def test_import_duplicate_inside_file_update_keeps_the_last(cli, tmp_path):
    summary = cli.json("users", "import", str(write(tmp_path, "d.csv", DUP_IN_FILE)), "--on-duplicate", "update")
    assert summary == {"rows": 3, "added": 2, "updated": 1, "skipped": 0, "invalid": 0}
    user = users_by_phone(cli)["79110000001"]
    assert (user["tag"], user["time_zone"]) == ("last", "Asia/Tokyo")
    assert len(phones(cli)) == 2


DUP_WITH_DB = "phone_number,tag,time_zone\n79110000001,new,Asia/Tokyo\n79110000009,fresh,UTC\n"


@pytest.fixture
def registered(cli):
    cli.ok("users", "add", "79110000001", "--tag", "old", "--tz", "Europe/Moscow")
    return cli


def test_import_duplicate_of_a_registered_user_is_an_error_by_default(registered, tmp_path):
    before = registered.snapshot()
    result = registered("users", "import", str(write(tmp_path, "d.csv", DUP_WITH_DB)))
    assert result.exit_code == 2
    assert "line 2" in result.stderr
    assert "79110000001" in result.stderr
    assert registered.snapshot() == before


def test_import_duplicate_of_a_registered_user_skip(registered, tmp_path):
    summary = registered.json("users", "import", str(write(tmp_path, "d.csv", DUP_WITH_DB)), "--on-duplicate", "skip")
    assert summary == {"rows": 2, "added": 1, "updated": 0, "skipped": 1, "invalid": 0}
    users = users_by_phone(registered)
    assert (users["79110000001"]["tag"], users["79110000001"]["time_zone"]) == ("old", "Europe/Moscow")
    assert users["79110000009"]["tag"] == "fresh"


def test_import_duplicate_of_a_registered_user_update(registered, tmp_path):
    summary = registered.json("users", "import", str(write(tmp_path, "d.csv", DUP_WITH_DB)), "--on-duplicate", "update")
    assert summary == {"rows": 2, "added": 1, "updated": 1, "skipped": 0, "invalid": 0}
    users = users_by_phone(registered)
    assert (users["79110000001"]["tag"], users["79110000001"]["time_zone"]) == ("new", "Asia/Tokyo")
    assert len(users) == 2
    assert phones(registered, "--tag", "old") == []


def test_import_skip_invalid_with_duplicate_error_policy(registered, tmp_path):
    result = registered("users", "import", str(write(tmp_path, "d.csv", DUP_WITH_DB)), "--skip-invalid", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert set(summary) >= SUMMARY_KEYS
    assert summary["added"] == 1 and summary["invalid"] == 1
    assert "line 2" in result.stderr
    assert users_by_phone(registered)["79110000001"]["tag"] == "old"


def test_import_of_a_previously_removed_phone_adds_it(registered, tmp_path):
    registered.ok("users", "remove", "79110000001")
    summary = registered.json("users", "import", str(write(tmp_path, "d.csv", DUP_WITH_DB)))
    assert summary["added"] == 2
    assert users_by_phone(registered)["79110000001"]["tag"] == "new"


# --- users import: round trip ---------------------------------------------------------------


def test_exported_users_import_back_into_a_fresh_home(population, tmp_path):
    exported = population.ok("users", "list", "--json").stdout
    path = write(tmp_path, "export.json", exported)
    fresh = {"MAILCLI_HOME": str(tmp_path / "fresh-home")}
    summary = json.loads(population.ok("users", "import", str(path), "--json", env=fresh).stdout)
    assert summary["added"] == 5 and summary["invalid"] == 0
    again = json.loads(population.ok("users", "list", "--json", env=fresh).stdout)
    assert again == json.loads(exported)


def test_exported_users_import_back_from_stdin(population, tmp_path):
    exported = population.ok("users", "list", "--json").stdout
    fresh = {"MAILCLI_HOME": str(tmp_path / "fresh-home")}
    population.ok("users", "import", "-", input=exported, env=fresh)
    assert json.loads(population.ok("users", "list", "--json", env=fresh).stdout) == json.loads(exported)

"""``mailcli config`` and the settings every command resolves (SPEC section 3)."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from mailcli import __version__

SETTING_KEYS = ("home", "db", "tz", "gateway_url", "gateway_token")
TOKEN = "tok-9f8e7d6c5b4a39281706-SECRET"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def show(cli, *args: str, env: dict | None = None) -> dict:
    return json.loads(cli.ok(*args, "config", "show", "--json", env=env).stdout)


def assert_one_error_line(result, *needles: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def config_file(home: Path) -> Path:
    return home / "config.toml"


def write_config(home: Path, text: str) -> Path:
    home.mkdir(mode=0o700, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- config show ----------------------------------------------------------------------------


def test_show_json_lists_every_setting_with_value_and_source(cli, home):
    settings = show(cli)
    assert set(settings) == set(SETTING_KEYS)
    for key in SETTING_KEYS:
        assert set(settings[key]) == {"value", "source"}
    assert settings["home"]["value"] == str(home)
    assert settings["db"]["value"] == str(home / "mailcli.db")
    assert settings["tz"]["value"] == "Europe/Moscow"
    assert "MAILCLI_TZ" in settings["tz"]["source"]
    assert settings["gateway_url"]["value"] is None
    assert settings["gateway_token"]["value"] is None
    assert "default" in settings["gateway_url"]["source"]


def test_show_table_lists_every_setting(cli, home):
    result = cli.ok("config", "show")
    for key in SETTING_KEYS:
        assert key in result.stdout
    assert str(home) in result.stdout
    assert "Europe/Moscow" in result.stdout
    assert "MAILCLI_TZ" in result.stdout


def test_path_prints_the_config_file(cli, config_file):
    assert cli.ok("config", "path").stdout.strip() == str(config_file)


# --- precedence: option > env > config file > default ---------------------------------------


def test_db_precedence(cli, home, tmp_path):
    from_file, from_env, from_option = (str(tmp_path / name) for name in ("file.db", "env.db", "option.db"))
    assert show(cli)["db"] == {"value": str(home / "mailcli.db"), "source": "default"}

    cli.ok("config", "set", "db", from_file)
    settings = show(cli)
    assert settings["db"]["value"] == from_file
    assert "config" in settings["db"]["source"]

    settings = show(cli, env={"MAILCLI_DB": from_env})
    assert settings["db"]["value"] == from_env
    assert "MAILCLI_DB" in settings["db"]["source"]

    settings = show(cli, "--db", from_option, env={"MAILCLI_DB": from_env})
    assert settings["db"]["value"] == from_option
    assert "--db" in settings["db"]["source"]


def test_db_precedence_decides_where_data_goes(cli, home, tmp_path):
    from_file, from_env, from_option = (tmp_path / name for name in ("file.db", "env.db", "option.db"))
    cli.ok("config", "set", "db", str(from_file))
    cli.ok("users", "add", "79110000001", "--tag", "file")
    cli.ok("users", "add", "79110000002", "--tag", "env", env={"MAILCLI_DB": str(from_env)})
    cli.ok("--db", str(from_option), "users", "add", "79110000003", "--tag", "option", env={"MAILCLI_DB": str(from_env)})
    for path, phone in ((from_file, "79110000001"), (from_env, "79110000002"), (from_option, "79110000003")):
        listed = json.loads(cli.ok("--db", str(path), "users", "list", "--json").stdout)
        assert [u["phone_number"] for u in listed] == [phone]
    assert not (home / "mailcli.db").exists()


def test_tz_precedence(cli):
    settings = show(cli, env={"MAILCLI_TZ": None})
    assert "default" in settings["tz"]["source"]
    assert settings["tz"]["value"]

    cli.ok("config", "set", "tz", "Asia/Vladivostok")
    settings = show(cli, env={"MAILCLI_TZ": None})
    assert settings["tz"]["value"] == "Asia/Vladivostok"
    assert "config" in settings["tz"]["source"]

    settings = show(cli, env={"MAILCLI_TZ": "Asia/Tokyo"})
    assert settings["tz"]["value"] == "Asia/Tokyo"
    assert "MAILCLI_TZ" in settings["tz"]["source"]


def test_tz_from_the_config_file_is_the_operator_zone(cli):
    cli.ok("config", "set", "tz", "Asia/Vladivostok")
    user = json.loads(cli.ok("users", "add", "79110000001", "--tag", "x", "--json", env={"MAILCLI_TZ": None}).stdout)
    assert user["time_zone"] == "Asia/Vladivostok"
    user = json.loads(cli.ok("users", "add", "79110000002", "--tag", "x", "--json", env={"MAILCLI_TZ": "Asia/Tokyo"}).stdout)
    assert user["time_zone"] == "Asia/Tokyo"


def test_gateway_url_precedence(cli):
    assert show(cli)["gateway_url"]["value"] is None
    cli.ok("config", "set", "gateway_url", "https://probe.fbrq.cloud/v1")
    settings = show(cli)
    assert settings["gateway_url"]["value"] == "https://probe.fbrq.cloud/v1"
    assert "config" in settings["gateway_url"]["source"]
    settings = show(cli, env={"MAILCLI_GATEWAY_URL": "http://127.0.0.1:8080"})
    assert settings["gateway_url"]["value"] == "http://127.0.0.1:8080"
    assert "MAILCLI_GATEWAY_URL" in settings["gateway_url"]["source"]


# --- config set / unset ---------------------------------------------------------------------


def test_set_writes_a_private_config_file_in_a_private_home(cli, home, config_file):
    assert not home.exists()
    cli.ok("config", "set", "gateway_url", "https://probe.fbrq.cloud/v1")
    assert tomllib.loads(config_file.read_text()) == {"gateway_url": "https://probe.fbrq.cloud/v1"}
    assert mode(config_file) == 0o600
    assert mode(home) == 0o700


def test_set_keeps_the_other_keys(cli, config_file):
    cli.ok("config", "set", "gateway_url", "https://probe.fbrq.cloud/v1")
    cli.ok("config", "set", "tz", "Asia/Tokyo")
    cli.ok("config", "set", "gateway_url", "http://127.0.0.1:9000")
    assert tomllib.loads(config_file.read_text()) == {"gateway_url": "http://127.0.0.1:9000", "tz": "Asia/Tokyo"}
    assert mode(config_file) == 0o600


def test_set_says_what_it_wrote_on_stderr(cli, config_file):
    result = cli.ok("config", "set", "gateway_url", "https://probe.fbrq.cloud/v1")
    assert "gateway_url" in result.stderr
    assert result.stdout == ""


def test_token_is_never_printed_in_full(cli, config_file):
    result = cli.ok("config", "set", "gateway_token", TOKEN)
    outputs = [result.stdout + result.stderr]
    assert tomllib.loads(config_file.read_text())["gateway_token"] == TOKEN
    assert mode(config_file) == 0o600
    table = cli.ok("config", "show")
    outputs.append(table.stdout + table.stderr)
    as_json = cli.ok("config", "show", "--json")
    outputs.append(as_json.stdout + as_json.stderr)
    shown = json.loads(as_json.stdout)["gateway_token"]
    assert shown["value"]  # it is set, and says so
    assert "config" in shown["source"]
    for output in outputs:
        assert TOKEN not in output


def test_token_from_the_environment_is_never_printed_in_full(cli):
    env = {"MAILCLI_GATEWAY_TOKEN": TOKEN}
    for args in (("config", "show"), ("config", "show", "--json")):
        result = cli.ok(*args, env=env)
        assert TOKEN not in result.stdout + result.stderr
    assert "MAILCLI_GATEWAY_TOKEN" in show(cli, env=env)["gateway_token"]["source"]


@pytest.mark.parametrize("token", ["abc", "short-token", "x" * 200])
def test_tokens_of_any_length_are_masked(cli, token):
    result = cli.ok("config", "set", "gateway_token", token)
    assert token not in result.stdout + result.stderr
    for args in (("config", "show"), ("config", "show", "--json")):
        shown = cli.ok(*args)
        assert token not in shown.stdout + shown.stderr


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        pytest.param("colour", "blue", "colour", id="unknown-key"),
        pytest.param("gateway_urls", "https://probe.fbrq.cloud/v1", "gateway_urls", id="typo-key"),
        pytest.param("gateway_url", "probe.fbrq.cloud/v1", "gateway_url", id="url-without-scheme"),
        pytest.param("gateway_url", "ftp://probe.fbrq.cloud/v1", "gateway_url", id="url-ftp"),
        pytest.param("gateway_url", "https://", "gateway_url", id="url-without-host"),
        pytest.param("gateway_url", "not a url", "gateway_url", id="url-words"),
        pytest.param("gateway_url", "", "gateway_url", id="url-empty"),
        pytest.param("tz", "Mars/Olympus", "tz", id="unknown-zone"),
        pytest.param("tz", "europe/moscow", "Europe/Moscow", id="zone-case-hint"),
        pytest.param("tz", "", "tz", id="zone-empty"),
    ],
)
def test_set_rejects_invalid_values_and_leaves_the_file_unchanged(cli, config_file, key, value, field):
    cli.ok("config", "set", "gateway_url", "https://probe.fbrq.cloud/v1")
    before = config_file.read_bytes()
    result = cli("config", "set", key, value)
    assert result.exit_code == 2
    assert_one_error_line(result, field)
    assert config_file.read_bytes() == before


def test_set_rejects_invalid_values_without_creating_anything(cli, home):
    result = cli("config", "set", "gateway_url", "nope")
    assert result.exit_code == 2
    assert not (home / "config.toml").exists()


def test_unset_removes_the_key(cli, config_file):
    cli.ok("config", "set", "gateway_url", "https://probe.fbrq.cloud/v1")
    cli.ok("config", "set", "gateway_token", TOKEN)
    result = cli.ok("config", "unset", "gateway_url")
    assert "gateway_url" in result.stderr
    assert tomllib.loads(config_file.read_text()) == {"gateway_token": TOKEN}
    assert mode(config_file) == 0o600
    settings = show(cli)
    assert settings["gateway_url"]["value"] is None
    assert "default" in settings["gateway_url"]["source"]


def test_unset_of_a_key_not_set_is_fine(cli, config_file):
    cli.ok("config", "set", "tz", "Asia/Tokyo")
    cli.ok("config", "unset", "gateway_token")
    assert tomllib.loads(config_file.read_text()) == {"tz": "Asia/Tokyo"}


def test_unset_rejects_an_unknown_key(cli, config_file):
    cli.ok("config", "set", "tz", "Asia/Tokyo")
    before = config_file.read_bytes()
    result = cli("config", "unset", "colour")
    assert result.exit_code == 2
    assert_one_error_line(result, "colour")
    assert config_file.read_bytes() == before


# --- invalid settings -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [("users", "list"), ("config", "show"), ("mailings", "list")])
def test_invalid_tz_in_the_environment_is_named(cli, command):
    result = cli(*command, env={"MAILCLI_TZ": "Mars/Olympus"})
    assert result.exit_code == 2
    assert_one_error_line(result, "MAILCLI_TZ")
    assert result.stdout == ""


def test_invalid_gateway_url_in_the_environment_is_named(cli):
    result = cli("config", "show", env={"MAILCLI_GATEWAY_URL": "nope"})
    assert result.exit_code == 2
    assert_one_error_line(result, "MAILCLI_GATEWAY_URL")


def test_invalid_value_in_the_config_file_is_named(cli, home):
    write_config(home, 'tz = "Mars/Olympus"\n')
    result = cli("users", "list", env={"MAILCLI_TZ": None})
    assert result.exit_code == 2
    assert_one_error_line(result, "tz")
    assert "config.toml" in result.stderr


@pytest.mark.parametrize(
    "text",
    ["gateway_url = \n", "this is not toml\n", 'gateway_url = "unterminated\n', "[section\n"],
    ids=["missing-value", "words", "unterminated-string", "unclosed-table"],
)
@pytest.mark.parametrize("command", [("users", "list"), ("config", "show")])
def test_malformed_config_file_is_one_clear_line(cli, home, text, command):
    write_config(home, text)
    result = cli(*command)
    assert result.exit_code != 0
    assert_one_error_line(result, "config.toml")
    assert result.stdout == ""


def test_unknown_key_in_the_config_file_is_named(cli, home):
    write_config(home, 'colour = "blue"\n')
    result = cli("config", "show")
    assert result.exit_code == 2
    assert_one_error_line(result, "colour")


def test_set_does_not_overwrite_a_malformed_config_file(cli, home):
    path = write_config(home, "this is not toml\n")
    result = cli("config", "set", "tz", "Asia/Tokyo")
    assert result.exit_code != 0
    assert_one_error_line(result, "config.toml")
    assert path.read_text() == "this is not toml\n"


# --- the database file ----------------------------------------------------------------------


def test_first_command_creates_a_private_home_and_database(cli, home):
    cli.ok("users", "list")
    assert mode(home) == 0o700
    assert mode(home / "mailcli.db") == 0o600
    for sidecar in ("mailcli.db-wal", "mailcli.db-shm"):
        if (home / sidecar).exists():
            assert mode(home / sidecar) & 0o077 == 0, sidecar


def test_db_option_file_is_private_too(cli, tmp_path):
    path = tmp_path / "elsewhere.db"
    cli.ok("--db", str(path), "users", "add", "79110000001", "--tag", "x")
    assert mode(path) == 0o600


def test_db_in_a_missing_directory_is_an_operational_error(cli, tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "x.db"
    result = cli("--db", str(path), "users", "list")
    assert result.exit_code == 1
    assert_one_error_line(result, str(path.parent))
    assert not path.parent.exists()


def test_db_option_persists_data_across_commands(cli, home, tmp_path):
    path = str(tmp_path / "campaign.db")
    cli.ok("--db", path, "users", "add", "79114048095", "--tag", "python-tips")
    cli.ok("--db", path, "mailings", "create", "-m", "hi", "--tag", "python-tips", "--operator-code", "911",
           "--start", "now", "--end", "+1h")
    users = json.loads(cli.ok("--db", path, "users", "list", "--json").stdout)
    assert [u["phone_number"] for u in users] == ["79114048095"]
    assert len(json.loads(cli.ok("--db", path, "mailings", "list", "--json").stdout)) == 1
    assert cli.json("users", "list") == []  # the default database is another one
    assert cli.json("mailings", "list") == []


def test_db_from_the_environment_accepts_an_sqlalchemy_url(cli, tmp_path):
    path = tmp_path / "url.db"
    env = {"MAILCLI_DB": f"sqlite:///{path}"}
    cli.ok("users", "add", "79114048095", "--tag", "x", env=env)
    assert path.exists()
    assert len(json.loads(cli.ok("users", "list", "--json", env=env).stdout)) == 1


def test_debug_shows_a_traceback_for_an_operational_error(home, tmp_path, mailcli_process):
    run_mailcli = mailcli_process
    args = ("--db", str(tmp_path / "missing" / "x.db"), "users", "list")
    quiet = run_mailcli(*args)
    assert quiet.returncode == 1
    assert "Traceback" not in quiet.stderr
    assert len(quiet.stderr.strip().splitlines()) == 1
    loud = run_mailcli(*args, env={"MAILCLI_DEBUG": "1"})
    assert loud.returncode != 0
    assert "Traceback" in loud.stderr


# --- help and version -----------------------------------------------------------------------

COMMANDS = [
    (),
    ("users",),
    ("users", "add"),
    ("users", "list"),
    ("users", "update"),
    ("users", "remove"),
    ("users", "import"),
    ("mailings",),
    ("mailings", "create"),
    ("mailings", "list"),
    ("mailings", "show"),
    ("mailings", "stats"),
    ("mailings", "cancel"),
    ("config",),
    ("config", "show"),
    ("config", "set"),
    ("config", "unset"),
    ("config", "path"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mailcli")
def test_help_explains_with_an_example(cli, home, command):
    result = cli.ok(*command, "--help")
    assert "Example" in result.stdout
    assert "Usage" in result.stdout
    assert not home.exists()  # asking for help touches nothing


def test_help_from_a_separate_process(mailcli_process):
    run_mailcli = mailcli_process
    result = run_mailcli("--help")
    assert result.returncode == 0
    assert "Example" in result.stdout


def test_version(mailcli_process):
    run_mailcli = mailcli_process
    result = run_mailcli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mailcli {__version__}"

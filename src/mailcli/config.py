"""Settings, the home directory and the config file (SPEC section 3).

Precedence: command-line option > environment variable > config file > default.
Every setting has a ``MAILCLI_`` variable; the config file lives at
``$MAILCLI_HOME/config.toml`` so that cron, which starts with an almost empty
environment, still finds the gateway.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mailcli.errors import MailcliError, invalid, operational

APP_NAME = "mailcli"
CONFIG_FILE = "config.toml"
DB_FILE = "mailcli.db"
HOME_MODE = 0o700
FILE_MODE = 0o600

# key in config.toml -> environment variable
CONFIG_KEYS: dict[str, str] = {
    "db": "MAILCLI_DB",
    "tz": "MAILCLI_TZ",
    "gateway_url": "MAILCLI_GATEWAY_URL",
    "gateway_token": "MAILCLI_GATEWAY_TOKEN",
}
SECRET_KEYS = frozenset({"gateway_token"})


def user_dir(env: Mapping[str, str] | None = None) -> Path:
    """The mailcli home: ``$MAILCLI_HOME``, else the platform's per-user data directory."""
    env = os.environ if env is None else env
    override = env.get("MAILCLI_HOME", "").strip()
    if override:
        return Path(override).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def ensure_home(home: Path) -> Path:
    """Create the home directory private to its owner (0700) if it does not exist."""
    if not home.exists():
        try:
            home.mkdir(mode=HOME_MODE, parents=True)
            os.chmod(home, HOME_MODE)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise operational(f"cannot create the mailcli home {home}: {exc.strerror}") from None
    elif not home.is_dir():
        raise operational(f"the mailcli home {home} exists but is not a directory")
    return home


def create_private_file(path: Path) -> None:
    """Create ``path`` empty and owner-only (0600) unless it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(path, FILE_MODE)


def mask_secret(value: str | None) -> str | None:
    """Show enough of a token to recognise it, never the whole of it."""
    if not value:
        return value
    if len(value) < 12:
        return "****"
    return f"****{value[-4:]}"


@dataclass(frozen=True)
class Settings:
    """The resolved settings, and where each value came from."""

    home: Path
    db: str
    tz: str
    gateway_url: str | None
    gateway_token: str | None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def db_url(self) -> str:
        return database_url(self.db)

    @property
    def default_db_path(self) -> Path:
        return self.home / DB_FILE

    def describe(self) -> list[dict[str, str | None]]:
        """Each setting with its shown value (secrets masked) and source, for ``config show``."""
        rows: list[dict[str, str | None]] = [
            {"key": "home", "value": str(self.home), "source": self.sources.get("home")},
        ]
        for key in CONFIG_KEYS:
            value = getattr(self, key)
            shown = mask_secret(value) if key in SECRET_KEYS else value
            rows.append({"key": key, "value": shown, "source": self.sources.get(key)})
        return rows


def database_url(value: str) -> str:
    """A database setting (file path or SQLAlchemy URL) as an SQLAlchemy URL."""
    if "://" in value:
        return value
    path = Path(value).expanduser().absolute()
    return f"sqlite:///{path}"


def read_config_file(path: Path) -> dict[str, str]:
    """The config file's values; a missing file is an empty config."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise invalid(None, f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise operational(f"cannot read {path}: {exc.strerror}") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise invalid(None, f"{path}: unknown key {unknown[0]!r} (known keys: {', '.join(CONFIG_KEYS)})")
    for key, value in data.items():
        if not isinstance(value, str):
            raise invalid(None, f"{path}: {key} must be a string")
    return dict(data)


def validate_setting(key: str, value: str) -> str:
    """Check one setting's value as ``config set`` and the environment give it."""
    if key not in CONFIG_KEYS:
        raise invalid("key", f"unknown setting {key!r} (known: {', '.join(CONFIG_KEYS)})")
    value = value.strip()
    if not value:
        raise invalid(key, "must not be empty")
    if key == "tz":
        from mailcli.validation import validate_zone

        return validate_zone(value, field="tz")
    if key == "gateway_url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid(key, f"{value!r} is not an http(s) URL (e.g. https://probe.fbrq.cloud/v1)")
        return value.rstrip("/")
    return value


def system_zone() -> str:
    """The system's local IANA zone, or UTC when it cannot be named."""
    from mailcli.validation import zone_names

    try:
        import tzlocal

        name = tzlocal.get_localzone_name()
    except Exception:  # tzlocal raises several types for odd setups
        name = None
    return name if name in zone_names() else "UTC"


def load_settings(db_option: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting: option > environment > config file > default."""
    env = os.environ if env is None else env
    home = user_dir(env)
    sources: dict[str, str] = {"home": "env MAILCLI_HOME" if env.get("MAILCLI_HOME", "").strip() else "default"}
    file_values = read_config_file(home / CONFIG_FILE)
    values: dict[str, str | None] = {}
    for key, var in CONFIG_KEYS.items():
        from_env = env.get(var, "").strip()
        if key == "db" and db_option:
            values[key], sources[key] = db_option, "option --db"
        elif from_env:
            values[key], sources[key] = _checked(key, from_env, var), f"env {var}"
        elif file_values.get(key, "").strip():
            values[key], sources[key] = _checked(key, file_values[key], "config.toml"), "config file"
        else:
            values[key], sources[key] = None, "default"
    if values["db"] is None:
        values["db"] = str(home / DB_FILE)
    if values["tz"] is None:
        values["tz"] = system_zone()
        sources["tz"] = "default (system zone)"
    return Settings(
        home=home,
        db=values["db"],
        tz=values["tz"],
        gateway_url=values["gateway_url"],
        gateway_token=values["gateway_token"],
        sources=sources,
    )


def _checked(key: str, value: str, origin: str) -> str:
    """Validate a value from the environment or the config file, naming where it came from."""
    try:
        return validate_setting(key, value)
    except MailcliError as exc:
        raise invalid(origin, f"{key}: {exc.message}" if origin == "config.toml" else exc.message) from None


def write_config_value(home: Path, key: str, value: str | None) -> Path:
    """Set (or with ``None`` remove) one key in the config file, written owner-only."""
    import tomli_w

    if key not in CONFIG_KEYS:
        raise invalid("key", f"unknown setting {key!r} (known: {', '.join(CONFIG_KEYS)})")
    if value is not None:
        value = validate_setting(key, value)
    ensure_home(home)
    path = home / CONFIG_FILE
    data = read_config_file(path)
    if value is None:
        data.pop(key, None)
    else:
        data[key] = value
    tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            tomli_w.dump(data, fh)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise operational(f"cannot write {path}: {exc.strerror}") from None
    return path


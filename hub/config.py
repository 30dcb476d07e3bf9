"""One Settings object for the whole of Hub.

Values come from HUB_* environment variables, then an optional hub.toml in the
working directory (or the file HUB_CONFIG names), then defaults. A wrong value
stops Hub with one line that names the setting, because a typo in a deployment
should be found at start-up, not in the middle of a campaign.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

CONFIG_FILE = "hub.toml"


class SettingsError(ValueError):
    """A setting has a value Hub cannot use; the message names the setting."""


def _(message: str, **variables: Any) -> str:
    """`message` in the current language, from the core's own catalog.

    Not hub.i18n.gettext: that gathers the plugins' catalogs too, and finding
    the plugins reads these very settings, so a bad setting would be checked
    again while its own message is being translated.
    """
    from hub import i18n

    text = i18n.core_translations(i18n.current_language()).gettext(message)
    return text % variables if variables else text


@dataclass(frozen=True)
class Settings:
    """Everything configurable, read once.

    Plugins read their own keys from `extra` (their own [NAME] table in
    hub.toml, and any other HUB_* variable, lowercased without the prefix), so
    the core needs no change when a plugin grows a setting.
    """

    database_url: str = "sqlite:///hub.db"
    redis_url: str | None = None
    default_region: str = "RU"
    timezone: str = "Europe/Moscow"
    language: str = "ru"
    secret_key: str | None = None
    plugins: tuple[str, ...] | None = None
    plugins_dir: str | None = None
    config_path: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def require_secret_key(self) -> str:
        """The key that encrypts credentials and signs links; `hub init` creates it."""
        if not self.secret_key:
            raise SettingsError(_("HUB_SECRET_KEY: not set; run `hub init` to generate one"))
        return self.secret_key


# setting name -> environment variable; the hub.toml key is the setting name.
_ENV = {
    "database_url": "HUB_DATABASE_URL",
    "redis_url": "HUB_REDIS_URL",
    "default_region": "HUB_DEFAULT_REGION",
    "timezone": "HUB_TIMEZONE",
    "language": "HUB_LANGUAGE",
    "secret_key": "HUB_SECRET_KEY",
    "plugins": "HUB_PLUGINS",
    "plugins_dir": "HUB_PLUGINS_DIR",
}


def load_settings(environ: Mapping[str, str] | None = None, config_path: str | None = None) -> Settings:
    """Read settings from the environment and hub.toml and check every value."""
    environ = os.environ if environ is None else environ
    path = Path(config_path or environ.get("HUB_CONFIG") or CONFIG_FILE)
    file_values = _read_toml(path)
    values: dict[str, Any] = {}
    for name, env_name in _ENV.items():
        if env_name in environ:
            values[name] = environ[env_name]
        elif name in file_values:
            values[name] = file_values[name]
    extra = {k: v for k, v in file_values.items() if k not in _ENV}
    extra.update({k[4:].lower(): v for k, v in environ.items() if k.startswith("HUB_") and k not in _ENV.values()})
    settings = Settings(config_path=str(path), extra=extra, **_check(values))
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(_("%(path)s: not valid TOML (%(error)s)", path=path, error=exc)) from None


def _check(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "database_url" in out:
        url = str(out["database_url"]).strip()
        if not url or "://" not in url:
            raise SettingsError(_("HUB_DATABASE_URL: %(url)r is not a database URL (e.g. sqlite:///hub.db)", url=url))
        if url.split("://", 1)[0].split("+")[0] not in ("sqlite", "postgresql", "postgres"):
            raise SettingsError(_("HUB_DATABASE_URL: %(scheme)r is not supported; use sqlite or postgresql",
                                  scheme=url.split("://", 1)[0]))
        out["database_url"] = url.replace("postgres://", "postgresql://", 1)
    if "redis_url" in out:
        redis_url = str(out["redis_url"]).strip() or None
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(_("HUB_REDIS_URL: %(url)r is not a redis:// URL", url=redis_url))
        out["redis_url"] = redis_url
    if "default_region" in out:
        region = str(out["default_region"]).strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise SettingsError(_("HUB_DEFAULT_REGION: %(region)r is not a known region code (e.g. RU, BY, KZ)",
                                  region=region))
        out["default_region"] = region
    if "timezone" in out:
        tz = str(out["timezone"]).strip()
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(_("HUB_TIMEZONE: %(zone)r is not a time zone (e.g. Europe/Moscow)", zone=tz)) from None
        out["timezone"] = tz
    if "language" in out:
        from hub.i18n import LANGUAGES

        language = str(out["language"]).strip().lower().replace("_", "-").split("-")[0]
        if language not in LANGUAGES:
            raise SettingsError(_("HUB_LANGUAGE: %(language)r is not a language Hub speaks (%(languages)s)",
                                  language=str(out["language"])[:20], languages=", ".join(LANGUAGES)))
        out["language"] = language
    if "secret_key" in out:
        key = str(out["secret_key"]).strip() or None
        if key is not None and len(key) < 16:
            raise SettingsError(_("HUB_SECRET_KEY: too short; use at least 16 characters"))
        out["secret_key"] = key
    if "plugins" in out:
        raw = out["plugins"]
        names = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
        out["plugins"] = tuple(n.strip() for n in names if str(n).strip())
    if "plugins_dir" in out:
        out["plugins_dir"] = str(out["plugins_dir"]).strip() or None
        if out["plugins_dir"] and not Path(out["plugins_dir"]).is_dir():
            raise SettingsError(_("HUB_PLUGINS_DIR: %(dir)r is not a directory", dir=out["plugins_dir"]))
    return out


def ensure_secret_key(settings: Settings) -> Settings:
    """Generate HUB_SECRET_KEY once and keep it in hub.toml (mode 0600).

    The key lives beside the database, not inside it, so a copy of the
    database alone does not reveal the credentials encrypted with it.
    """
    if settings.secret_key:
        return settings
    key = secrets.token_urlsafe(32)
    path = Path(settings.config_path or CONFIG_FILE)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    # Top-level keys must come before any [table] in TOML. The key is never in a file others
    # can read, not even for a moment: a private temporary file replaces hub.toml whole.
    temporary = path.with_name(path.name + ".part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(temporary, 0o600)  # a .part left by a crash keeps its old mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f'secret_key = "{key}"\n' + existing)
    os.replace(temporary, path)
    return replace(settings, secret_key=key)


def setting_names() -> list[str]:
    """The environment variables Hub reads, for `--help` texts and docs."""
    return [f.name for f in fields(Settings) if f.name in _ENV]

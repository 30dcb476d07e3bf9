"""Settings: environment, hub.toml, and one-line errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hub import i18n
from hub.config import SettingsError, ensure_secret_key, load_settings
from tests.support.cli import cli


def test_defaults() -> None:
    s = load_settings(environ={}, config_path="/nonexistent/hub.toml")
    assert (s.database_url, s.redis_url, s.default_region, s.timezone) == (
        "sqlite:///hub.db", None, "RU", "Europe/Moscow")


def test_environment_beats_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('default_region = "BY"\ntimezone = "Europe/Minsk"\n[lifecycle]\nvip_orders = 5\n')
    s = load_settings(environ={"HUB_DEFAULT_REGION": "kz"}, config_path=str(path))
    assert s.default_region == "KZ" and s.timezone == "Europe/Minsk"
    assert s.extra["lifecycle"] == {"vip_orders": 5}


@pytest.mark.parametrize("name,value,message,english", [
    ("HUB_DEFAULT_REGION", "XX", "HUB_DEFAULT_REGION: 'XX' — неизвестный код региона",
     "HUB_DEFAULT_REGION: 'XX' is not a known region code"),
    ("HUB_TIMEZONE", "Mars/Base", "HUB_TIMEZONE: 'Mars/Base' — не часовой пояс",
     "HUB_TIMEZONE: 'Mars/Base' is not a time zone"),
    ("HUB_DATABASE_URL", "mysql://x/y", "HUB_DATABASE_URL: 'mysql' не поддерживается",
     "HUB_DATABASE_URL: 'mysql' is not supported"),
    ("HUB_REDIS_URL", "localhost:6379", "HUB_REDIS_URL: 'localhost:6379' — не адрес вида redis://",
     "HUB_REDIS_URL: 'localhost:6379' is not a redis:// URL"),
    ("HUB_SECRET_KEY", "short", "HUB_SECRET_KEY: слишком короткий", "HUB_SECRET_KEY: too short"),
])
def test_a_wrong_value_names_the_setting(name: str, value: str, message: str, english: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={name: value}, config_path="/nonexistent/hub.toml")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    with i18n.use_language("en"), pytest.raises(SettingsError) as info:
        load_settings(environ={name: value}, config_path="/nonexistent/hub.toml")
    assert str(info.value).startswith(english)


def test_cli_reports_a_bad_setting_in_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUB_TIMEZONE", "Nowhere")
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 1
    assert result.output == "Ошибка: HUB_TIMEZONE: 'Nowhere' — не часовой пояс (например, Europe/Moscow)\n"
    monkeypatch.setenv("HUB_LANGUAGE", "en")  # readable although another setting is wrong
    result = CliRunner().invoke(cli, ["init"])
    assert result.output == "Error: HUB_TIMEZONE: 'Nowhere' is not a time zone (e.g. Europe/Moscow)\n"


def test_secret_key_is_generated_once_and_kept_in_hub_toml(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[bitrix24]\nportal = \"x\"\n")
    s = ensure_secret_key(load_settings(environ={}, config_path=str(path)))
    again = load_settings(environ={}, config_path=str(path))
    assert s.secret_key and again.secret_key == s.secret_key
    assert again.extra["bitrix24"] == {"portal": "x"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert ensure_secret_key(again) is again

"""Loading plugins: core, installed entry points (allow-listed), and a plugins directory."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hub import plugins
from hub.cli import cli, main
from hub.config import SettingsError, load_settings

PLUGIN_FILE = '''
import click
from hub.hookspecs import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command("hello")
    @click.argument("name")
    def hello(name):
        """Say hello."""
        click.echo(f"Привет, {name}!")

@hookimpl
def can_contact(channel):
    return None
'''


def test_plugins_dir_files_are_loaded_and_listed(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "greeter.py").write_text(PLUGIN_FILE, encoding="utf-8")
    settings = replace(load_settings(environ={}), plugins_dir=str(tmp_path), plugins=())
    pm = plugins.build(settings)
    described = {p["name"]: p for p in plugins.describe(pm)}
    assert described["greeter"]["kind"] == "directory"
    assert described["greeter"]["hooks"] == ["can_contact", "register_commands"]
    assert described["hub.consent_ledger"]["kind"] == "core"


def test_plugin_commands_join_the_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    # hook:register_commands
    (tmp_path / "greeter.py").write_text(PLUGIN_FILE, encoding="utf-8")
    monkeypatch.setenv("HUB_PLUGINS_DIR", str(tmp_path))
    monkeypatch.setenv("HUB_PLUGINS", "")
    plugins.use(None)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["hello", "Мир"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out == "Привет, Мир!\n"
        listed = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)
        assert "greeter" in {p["name"] for p in listed}
    finally:
        cli.commands.pop("hello", None)
        plugins.use(None)


def test_allow_list_naming_a_missing_plugin_is_a_clear_error() -> None:
    settings = replace(load_settings(environ={}), plugins=("nosuchplugin",))
    with pytest.raises(SettingsError, match="HUB_PLUGINS: nosuchplugin not installed"):
        plugins.build(settings)


def test_empty_allow_list_loads_only_the_core() -> None:
    pm = plugins.build(replace(load_settings(environ={}), plugins=()))
    assert sorted(name for name, _ in pm.list_name_plugin()) == sorted(plugins.DEFAULT_PLUGINS)
    assert "hub.commands" in plugins.DEFAULT_PLUGINS  # the core's own commands come through the same hook


def test_two_plugins_registering_the_same_source_name_is_refused() -> None:
    from hub.hookspecs import hookimpl

    class One:
        @hookimpl
        def register_sources(self, register):
            register("crm", object)

    class Two(One):
        pass

    pm = plugins.build(replace(load_settings(environ={}), plugins=()))
    pm.register(One())
    pm.register(Two())
    with pytest.raises(SettingsError, match="two plugins register source 'crm'"):
        plugins.sources(pm)


def test_click_is_what_commands_are_built_with() -> None:
    assert isinstance(cli, click.Group)

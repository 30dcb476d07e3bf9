"""hub.testing, the fixtures plugin authors test with, run the way they run it: in a project of their own."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

pytest_plugins = ("pytester",)

FAKE_PLUGIN = '''
from hub.api import ContactRecord, Page, hookimpl

PEOPLE = [{"id": "1", "name": "Анна", "phone": "8 (916) 123-45-67"},
          {"id": "2", "name": "Пётр", "phone": "+7 495 111-00-00"}]


class Source:
    name = "fakecrm"

    def entities(self):
        return ("contacts",)

    def checkpoint(self, entity):
        return None

    def read(self, entity, cursor, full):
        yield Page([ContactRecord(source="fakecrm", external_id=p["id"], first_name=p["name"], phones=[p["phone"]])
                    for p in PEOPLE], "2")


@hookimpl
def register_sources(register):
    register("fakecrm", lambda settings: Source())


@hookimpl
def register_commands(cli):
    import click

    @cli.command("fake-fail")
    def fail():
        raise click.ClickException("the fake CRM says no")

    @cli.commands["connect"].command("fakecrm")
    def connect():
        click.echo("connected")
'''


def run_suite(pytester: pytest.Pytester, tests: str, *, ini: str = "") -> Any:
    pytester.makepyfile(fakecrm=FAKE_PLUGIN)
    if ini:
        pytester.makeini(ini)
    pytester.makepyfile(test_plugin=textwrap.dedent(tests))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")


def test_a_plugin_project_tests_its_source_through_the_command_line(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, """
        def test_sync(hub_cli, hub_database):
            summary = hub_cli.json("sync", "fakecrm")
            assert summary["contacts"]["created"] == 2
            assert hub_database.scalar("SELECT count(*) FROM contacts") == 2

        def test_each_test_starts_empty(hub_database):
            assert hub_database.scalar("SELECT count(*) FROM contacts") == 0

        def test_only_the_plugins_under_test(hub_cli):
            names = {p["name"] for p in hub_cli.json("plugins")}
            assert "fakecrm" in names
            assert "bitrix24" not in names and "amocrm" not in names

        def test_a_failing_command_fails_the_test_with_its_output(hub_cli):
            result = hub_cli("fake-fail", expect_exit=1)
            assert "the fake CRM says no" in result.output

        def test_commands_stay_in_the_test(hub_cli):
            from hub.cli import cli

            assert hub_cli("connect", "fakecrm").output.strip() == "connected"
            # The root itself holds no command: `hub` adds the plugins' (and the core's) when it starts.
            assert "connect" not in cli.commands and "fake-fail" not in cli.commands
    """, ini="[pytest]\nhub_plugins = fakecrm\n")
    result.assert_outcomes(passed=5)


def test_the_marker_picks_plugins_and_names_unknown_ones(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, """
        import pytest

        @pytest.mark.hub_plugins("bitrix24")
        def test_installed_plugin(hub_plugins):
            assert hub_plugins.get_plugin("bitrix24") is not None
            assert hub_plugins.get_plugin("amocrm") is None

        @pytest.mark.hub_plugins("no_such_plugin_here")
        def test_unknown(hub_database):
            pass
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*'no_such_plugin_here' is neither an installed Hub plugin*"])


def test_the_clock_moves_hub_and_is_put_back(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, """
        import datetime as dt
        from hub.db import utcnow

        def test_moves(hub_clock):
            start = utcnow()
            assert start == hub_clock.now and start.tzinfo is not None
            hub_clock.advance(days=91)
            assert utcnow() - start == dt.timedelta(days=91)

        def test_real_again_afterwards():
            assert abs(utcnow() - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=1)
    """)
    result.assert_outcomes(passed=2)


def test_admin_client_is_signed_in_and_emulators_start(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, """
        import pytest

        @pytest.mark.hub_plugins("bitrix24")
        def test_admin_and_sandbox(hub_admin, hub_sandbox, hub_cli, hub_database):
            assert hub_admin.get("/contacts/").status_code == 200
            box = hub_sandbox("bitrix24", people=5)
            assert box.source == "bitrix24"
            summary = hub_cli.json("sync", "bitrix24")
            assert summary["contacts"]["created"] == hub_database.scalar("SELECT count(*) FROM contacts") > 0
            with pytest.raises(pytest.fail.Exception, match="offer: bitrix24"):
                hub_sandbox("amocrm")
    """)
    result.assert_outcomes(passed=1)

"""The command line as a user meets it: the demo, cards, dedupe, one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rich.console import Console
from sqlalchemy import func, select

from hub import plugins, sync
from hub.config import load_settings
from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.models import Contact
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # dedupe and merges by hand


def test_demo_runs_on_a_bare_directory_and_reports_real_results(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--people", "300"])
    assert result.exit_code == 0, result.output
    assert "Что Hub нашёл и исправил" in result.output  # Russian by default (English: tests/test_examples.py)
    assert "ошибочных объединений" in result.output
    assert (tmp_path / "d" / "hub.db").exists() and (tmp_path / "d" / "clients_1c.csv").exists()
    assert "+7" in result.output  # examples show normalized numbers


class Showcase:
    """A plugin showing its work at the end of the demo: how many contacts the demo's base holds."""

    @hookimpl
    def register_showcases(self, register):
        def show(settings, engine, workdir, console):
            with engine.connect() as conn:
                count = conn.execute(select(func.count()).select_from(Contact)).scalar_one()
            console.print(f"The counting plugin counted {count} contacts.")
            return {"contacts": count, "database": settings.database_url, "workdir": str(workdir)}

        register("counting", show)


def test_demo_report_is_correct(tmp_path: Path) -> None:
    from hub import demo

    # hook:register_sandboxes
    sandboxes = sorted(plugins.registry("register_sandboxes"))
    # hook:register_showcases
    pm = plugins.get_pm()
    pm.register(Showcase(), name="counting")
    console = Console(record=True, width=200)
    try:
        summary = demo.run(tmp_path / "d", people=300, seed=3, console=console)
    finally:
        pm.unregister(name="counting")
    assert summary["showcases"]["counting"] == {"contacts": summary["contacts"],
                                                "database": f"sqlite:///{tmp_path / 'd' / 'hub.db'}",
                                                "workdir": str(tmp_path / "d")}
    assert f"The counting plugin counted {summary['contacts']} contacts." in console.export_text(clear=False)
    if pm.get_plugin("workflows") is not None:  # the workflows plugin shows its reactivation campaign
        shown = summary["showcases"]["reactivation"]
        assert shown["emails"] == shown["files"] > 0
        # A week later on the demo's own clock: the SMS (consent granted for the demo) and the managers' call tasks.
        assert shown["sms"] == shown["sms_files"] > 0 and shown["sms_consented"] >= shown["sms"]
        assert 0 < shown["tasks"] == sum(shown["tasks_by_crm"].values()) <= shown["started"] - shown["holdout"]
        assert set(shown["tasks_by_crm"]) <= set(sandboxes)
        text = console.export_text()
        assert "Через неделю" in text and "задач" in text and "source: demo" in text
        assert abs(dt.datetime.now(dt.timezone.utc) - utcnow()) < dt.timedelta(hours=1)  # the real clock is back
    assert summary["false_merges"] == 0
    # The spreadsheets hold people 0-299; each CRM emulator 200 more, starting 100 later than the one before.
    assert summary["people"] == (300 * (1 + len(sandboxes)) // 3 + 200 if sandboxes else 300)
    assert summary["contacts"] >= summary["people"]  # a person whose records share nothing stays split
    assert summary["contacts"] - summary["people"] <= summary["split_people"] * 2
    assert summary["rows_unplaced"] == 0
    assert sorted(summary["crms"]) == sandboxes
    for name in sandboxes:
        crm = summary["crms"][name]
        assert crm["rate_limited"] == 0 and crm["orders"]["created"] > 0
        # A B2B base: the emulators hold companies and the calls, meetings and tasks managers logged.
        assert crm["companies"]["created"] > 0 and crm["activities"]["created"] > 0
        # 100 of each CRM's 200 people are in the spreadsheets or the CRM before it.
        assert crm["contacts"]["created"] < 200 and crm["contacts"]["updated"] + crm["contacts"]["merged"] >= 90


def write(db: HubDB, *records: ContactRecord) -> list[int]:
    with db.engine.begin() as conn:
        return sync.write_contacts(conn, list(records), db.settings, sync.Counts()).contact_ids


def test_contacts_show_gives_the_card_with_sources(hub_db: HubDB) -> None:
    (cid,) = write(hub_db, ContactRecord(source="crm", external_id="5", first_name="Вера", phones=["8 916 555 44 33"]))
    card = json.loads(CliRunner().invoke(cli, ["contacts", "show", str(cid), "--json"]).stdout)
    assert card["identities"] == [{"kind": "phone", "value": "+79165554433", "raw": "8 916 555 44 33",
                                   "valid": True, "source": "crm", "added_at": card["identities"][0]["added_at"],
                                   "label": None, "shared": None}]
    assert card["provenance"]["first_name"] == "crm"
    missing = CliRunner().invoke(cli, ["contacts", "show", "12345"])
    assert missing.exit_code == 1 and missing.output == "Ошибка: нет контакта с id 12345\n"
    shown = CliRunner().invoke(cli, ["contacts", "show", str(cid)], env={"COLUMNS": "200"})
    assert "+7 916 555-44-33" in shown.output and "(введено: 8 916 555 44 33)" in shown.output
    english = CliRunner().invoke(cli, ["contacts", "show", str(cid)], env={"HUB_LANGUAGE": "en", "COLUMNS": "200"})
    assert "+7 916 555-44-33" in english.output and "(typed: 8 916 555 44 33)" in english.output


def test_dedupe_lists_namesakes_and_merges_by_hand_only(hub_db: HubDB) -> None:
    a, b = write(hub_db,
                 ContactRecord(source="x", first_name="Иван", last_name="Петров", phones=["+79160000001"], city="Тула"),
                 ContactRecord(source="y", first_name="ИВАН", last_name="Петров", emails=["p@x.ru"], city="Тула"))
    runner = CliRunner()
    report = json.loads(runner.invoke(cli, ["dedupe", "--json"]).stdout)
    assert report["merged"] == []
    assert report["suggestions"] == [{"name": "Петров Иван", "contact_ids": [a, b],
                                      "evidence": ["same full name", "same city"], "likely": False}]
    merged = runner.invoke(cli, ["dedupe", "--merge", str(a), str(b)])
    assert merged.exit_code == 0 and f"Контакт #{b} объединён с #{a}." in merged.output
    people = json.loads(runner.invoke(cli, ["contacts", "list", "--json"]).stdout)
    assert len(people) == 1 and people[0]["emails"] == ["p@x.ru"] and people[0]["phones"] == ["+79160000001"]


def test_dedupe_reparses_values_flagged_under_a_wrong_region(hub_db: HubDB, monkeypatch) -> None:
    by = hub_db.settings.__class__(**{**hub_db.settings.__dict__, "default_region": "BY"})
    with hub_db.engine.begin() as conn:
        sync.write_contacts(conn, [ContactRecord(source="x", first_name="Ян", phones=["29 123 45 67"])],
                            hub_db.settings,
                            sync.Counts())
        sync.write_contacts(conn, [ContactRecord(source="y", first_name="Ян", phones=["+375 29 123-45-67"])], by,
                            sync.Counts())
    monkeypatch.setenv("HUB_DEFAULT_REGION", "BY")
    report = json.loads(CliRunner().invoke(cli, ["dedupe", "--json"]).stdout)
    assert report["reparsed"] == 1 and len(report["merged"]) == 1
    people = json.loads(CliRunner().invoke(cli, ["contacts", "list", "--json"]).stdout)
    assert len(people) == 1 and people[0]["phones"] == ["+375291234567"] and people[0]["invalid_phones"] == []


CORE_COMMANDS = {"admin", "api-keys", "connect", "consent", "contacts", "crm", "dedupe", "demo", "import", "init",
                 "plugin", "plugins", "sample", "sandbox", "scheduler", "segments", "sync", "users", "webhooks",
                 "worker"}


def test_hub_lists_the_core_commands_which_come_through_register_commands(tmp_path: Path) -> None:
    # hook:register_commands
    env = {**os.environ, "HUB_PLUGINS": "", "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    env.pop("HUB_PLUGINS_DIR", None)
    shown = subprocess.run([sys.executable, "-m", "hub", "--help"], env=env, cwd=tmp_path, capture_output=True,
                           text=True, check=True).stdout
    listed = set(re.findall(r"^  ([a-z-]+)  ", shown.split("Команды:")[1], flags=re.MULTILINE))
    assert listed == CORE_COMMANDS
    assert "hub.commands" in plugins.DEFAULT_PLUGINS
    root = click.Group("hub")  # the root itself holds none of them
    plugins.build(replace(load_settings(environ={}), plugins=())).hook.register_commands(cli=root)
    assert CORE_COMMANDS <= set(root.commands)


def test_every_command_has_help() -> None:
    runner = CliRunner()

    def walk(group, path):
        for name, command in group.commands.items():
            result = runner.invoke(cli, [*path, name, "--help"])
            assert result.exit_code == 0 and "Использование:" in result.output, (path, name)
            if hasattr(command, "commands"):
                walk(command, [*path, name])

    walk(cli, [])


def test_sample_command_writes_a_spreadsheet(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(cli, ["sample", "contacts", str(out), "--people", "50"])
    assert result.exit_code == 0 and out.read_bytes().decode("cp1251").startswith("ФИО;")

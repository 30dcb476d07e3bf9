"""The command line as a user meets it: the demo, cards, dedupe, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hub import plugins, sync
from hub.cli import cli
from hub.records import ContactRecord
from tests.conftest import HubDB


def test_demo_runs_on_a_bare_directory_and_reports_real_results(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--people", "300"])
    assert result.exit_code == 0, result.output
    assert "What Hub found and fixed" in result.output
    assert "wrong merges" in result.output
    assert (tmp_path / "d" / "hub.db").exists() and (tmp_path / "d" / "clients_1c.csv").exists()
    assert "+7" in result.output  # examples show normalized numbers


def test_demo_report_is_correct(tmp_path: Path) -> None:
    from hub import demo

    # hook:register_sandboxes
    sandboxes = sorted(plugins.registry("register_sandboxes"))
    summary = demo.run(tmp_path / "d", people=300, seed=3)
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
        # 100 of each CRM's 200 people are in the spreadsheets or the CRM before it.
        assert crm["contacts"]["created"] < 200 and crm["contacts"]["updated"] + crm["contacts"]["merged"] >= 90


def write(db: HubDB, *records: ContactRecord) -> list[int]:
    with db.engine.begin() as conn:
        return sync.write_contacts(conn, list(records), db.settings, sync.Counts()).contact_ids


def test_contacts_show_gives_the_card_with_sources(hub_db: HubDB) -> None:
    (cid,) = write(hub_db, ContactRecord(source="crm", external_id="5", first_name="Вера", phones=["8 916 555 44 33"]))
    card = json.loads(CliRunner().invoke(cli, ["contacts", "show", str(cid), "--json"]).stdout)
    assert card["identities"] == [{"kind": "phone", "value": "+79165554433", "raw": "8 916 555 44 33",
                                   "valid": True, "source": "crm", "added_at": card["identities"][0]["added_at"]}]
    assert card["provenance"]["first_name"] == "crm"
    missing = CliRunner().invoke(cli, ["contacts", "show", "12345"])
    assert missing.exit_code == 1 and missing.output == "Error: no contact with id 12345\n"


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
    assert merged.exit_code == 0 and f"Merged #{b} into #{a}" in merged.output
    people = json.loads(runner.invoke(cli, ["contacts", "list", "--json"]).stdout)
    assert len(people) == 1 and people[0]["emails"] == ["p@x.ru"] and people[0]["phones"] == ["+79160000001"]


def test_dedupe_reparses_values_flagged_under_a_wrong_region(hub_db: HubDB, monkeypatch) -> None:
    by = hub_db.settings.__class__(**{**hub_db.settings.__dict__, "default_region": "BY"})
    with hub_db.engine.begin() as conn:
        sync.write_contacts(conn, [ContactRecord(source="x", first_name="Ян", phones=["29 123 45 67"])], hub_db.settings,
                            sync.Counts())
        sync.write_contacts(conn, [ContactRecord(source="y", first_name="Ян", phones=["+375 29 123-45-67"])], by,
                            sync.Counts())
    monkeypatch.setenv("HUB_DEFAULT_REGION", "BY")
    report = json.loads(CliRunner().invoke(cli, ["dedupe", "--json"]).stdout)
    assert report["reparsed"] == 1 and len(report["merged"]) == 1
    people = json.loads(CliRunner().invoke(cli, ["contacts", "list", "--json"]).stdout)
    assert len(people) == 1 and people[0]["phones"] == ["+375291234567"] and people[0]["invalid_phones"] == []


def test_every_command_has_help() -> None:
    runner = CliRunner()

    def walk(group, path):
        for name, command in group.commands.items():
            result = runner.invoke(cli, [*path, name, "--help"])
            assert result.exit_code == 0 and "Usage:" in result.output, (path, name)
            if hasattr(command, "commands"):
                walk(command, [*path, name])

    walk(cli, [])


def test_sample_command_writes_a_spreadsheet(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(cli, ["sample", "contacts", str(out), "--people", "50"])
    assert result.exit_code == 0 and out.read_bytes().decode("cp1251").startswith("ФИО;")

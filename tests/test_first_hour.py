"""A new user's first hour at the terminal: the README tour, paging, fresh segment counts, dedupe totals.

Russian is the default; English is one setting away (HUB_LANGUAGE=en).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub import sync
from hub.config import load_settings
from hub.db import get_engine
from hub.models import ContactIdentity, ContactMerge
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.servers import free_port
from tests.support.cli import cli

ROOT = Path(__file__).resolve().parent.parent
EN = {"HUB_LANGUAGE": "en"}


def hub(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200", **(env or {})})  # tables unwrapped
    assert result.exit_code == 0, result.output
    return result.stdout


def write(db: HubDB, *records: ContactRecord) -> list[int]:
    with db.engine.begin() as conn:
        return [cid for cid in sync.write_contacts(conn, list(records), db.settings, sync.Counts()).contact_ids
                if cid is not None]


def people(db: HubDB, n: int, start: int = 0) -> list[int]:
    return write(db, *(ContactRecord(source="crm", external_id=str(i), first_name=f"Имя{i}", last_name="Тестов",
                                     phones=[f"+7916{i:07d}"]) for i in range(start, start + n)))


# --- the README tour ------------------------------------------------------------------------------

def tour_script(port: int) -> str:
    """The tour's commands as a script: the servers that run until stopped (admin, scheduler) left out."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## A five-minute tour", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = ["set -euo pipefail", "trap 'kill $sandbox 2>/dev/null || true' EXIT"]
    for line in block.splitlines():
        command = line.split("  #", 1)[0].rstrip()
        if not command or command.startswith(("source ", "hub admin", "hub scheduler")):
            continue
        command = command.replace("--people 2000", "--people 2000 --truth truth.csv")  # to check the merge
        if command.startswith("hub sandbox"):  # a free port; fewer people, the same webhook (it comes from --seed)
            command = command.replace("--contacts 5000 & ", f"--contacts 500 --port {port} & sandbox=$!; ")
        lines.append(command.replace("127.0.0.1:8024", f"127.0.0.1:{port}"))
    return "\n".join(lines) + "\n"


def test_the_readme_tour_runs_as_written_and_merges_one_person(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "160"
    script = tour_script(free_port())
    assert "hub dedupe --merge $1 $2" in script and "12 34" not in script
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert "Показаны 1–10 из" in done.stdout  # contacts list --limit 10: a page and the total
    assert "Обновляю" in done.stderr or "Обновляю" in done.stdout  # segments list refreshed after the sync
    assert (tmp_path / "hub-myshop" / "pyproject.toml").is_file()

    # The pair the tour merged by hand is one person in the generator's truth.
    engine = get_engine(load_settings({"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"},
                                      config_path="/nonexistent").database_url)
    with engine.connect() as conn:
        (survivor, merged), = conn.execute(select(ContactMerge.survivor_id, ContactMerge.merged_id)
                                           .where(ContactMerge.actor == "cli")).all()
        raws = set(conn.execute(select(ContactIdentity.raw).where(ContactIdentity.contact_id == survivor,
                                                                  ContactIdentity.valid.is_(True))).scalars())
    engine.dispose()
    truth = {int(r["line"]): int(r["person_id"]) for r in csv.DictReader((tmp_path / "truth.csv").open())}
    with (tmp_path / "clients.csv").open(encoding="cp1251", newline="") as f:
        lines = [n for n, row in enumerate(csv.reader(f, delimiter=";"), 1) if raws & set(row)]
    assert len(lines) >= 2 and len({truth[n] for n in lines}) == 1, (survivor, merged, lines)


# --- contacts list pages --------------------------------------------------------------------------

def test_contacts_list_shows_a_page_with_the_total_and_how_to_see_more(hub_db: HubDB) -> None:
    ids = people(hub_db, 57)
    shown = hub("contacts", "list")
    assert re.findall(r"^│ (\d+) ", shown, flags=re.MULTILINE) == [str(i) for i in ids[:50]]
    assert "Показаны 1–50 из 57 контактов." in shown
    assert "hub contacts list --page 2" in shown and "hub contacts list --all" in shown
    assert "+7 916 000-00-00" in shown  # phones as people read them
    second = hub("contacts", "list", "--page", "2")
    assert re.findall(r"^│ (\d+) ", second, flags=re.MULTILINE) == [str(i) for i in ids[50:]]
    assert "Показаны 51–57 из 57 контактов." in second and "--page 3" not in second
    assert "Показаны 11–15 из 57" in hub("contacts", "list", "--limit", "5", "--offset", "10")
    everyone = hub("contacts", "list", "--all")
    assert len(re.findall(r"^│ \d+ ", everyone, flags=re.MULTILINE)) == 57 and "Всего 57 контактов." in everyone
    english = hub("contacts", "list", "--limit", "5", env=EN)
    assert "Shown 1–5 of 57 contacts. Next page: hub contacts list --page 2 --limit 5" in english


def test_contacts_list_json_keeps_every_contact_unless_limited(hub_db: HubDB) -> None:
    ids = people(hub_db, 57)
    every = json.loads(hub("contacts", "list", "--json"))
    assert [c["id"] for c in every] == ids and every[0]["phones"] == ["+79160000000"]  # E.164 for scripts
    assert [c["id"] for c in json.loads(hub("contacts", "list", "--json", "--limit", "7"))] == ids[:7]
    assert [c["id"] for c in json.loads(hub("contacts", "list", "--json", "--offset", "55"))] == ids[55:]


def test_an_empty_base_says_how_to_fill_it(hub_db: HubDB) -> None:
    assert "Контактов пока нет" in hub("contacts", "list")
    assert "No contacts yet" in hub("contacts", "list", env=EN)


# --- segments list after a sync --------------------------------------------------------------------

@pytest.mark.both_databases
def test_segments_list_right_after_a_sync_shows_real_counts(hub_db: HubDB) -> None:
    people(hub_db, 3)
    hub("segments", "refresh")
    people(hub_db, 4, start=3)  # a sync after the last refresh
    before = {s["name"]: s for s in json.loads(hub("segments", "list", "--json", "--no-refresh"))}
    assert before["new_30d"]["members"] == 3 and before["new_30d"]["stale"] is True
    marked = hub("segments", "list", "--no-refresh")
    assert "3 (устарело)" in marked and "данные с тех пор изменились" in marked
    assert "hub segments refresh" in marked

    shown = CliRunner().invoke(cli, ["segments", "list"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "Обновляю" in shown.output  # what it does first, on stderr
    row = next(line for line in shown.stdout.splitlines() if "new_30d" in line)
    assert row.index("Новые за последние 30 дней") < row.index("new_30d")  # the title first, the name beside it
    assert "Техническое имя" in shown.stdout and "│ Имя" not in shown.stdout
    assert re.search(r"│ 7\s+│", row) and "устарело" not in shown.stdout
    after = {s["name"]: s for s in json.loads(hub("segments", "list", "--json"))}
    assert after["new_30d"]["members"] == 7 and not any(s["stale"] for s in after.values())
    assert "Segment" in hub("segments", "list", env=EN)


def test_segments_never_refreshed_are_refreshed_by_the_list(hub_db: HubDB) -> None:
    people(hub_db, 2)
    listed = {s["name"]: s for s in json.loads(hub("segments", "list", "--json"))}
    assert listed["never_bought"]["members"] == 2 and listed["never_bought"]["refreshed_at"] is not None
    fresh = hub("segments", "list", "--no-refresh")
    assert "устарело" not in fresh and "МСК" in fresh  # times local and labelled


# --- dedupe totals ---------------------------------------------------------------------------------

def namesakes(db: HubDB, groups: int) -> None:
    write(db, *(ContactRecord(source="s", external_id=f"{g}-{n}", first_name=f"Имя{g:02d}", last_name="Петров",
                              emails=[f"p{g}-{n}@x.ru"]) for g in range(groups) for n in (1, 2)))


def test_dedupe_says_how_many_groups_and_how_to_see_the_rest(hub_db: HubDB) -> None:
    namesakes(hub_db, 35)
    first = hub("dedupe")
    assert "35 групп контактов совпадают только по имени" in first
    assert len(re.findall(r"^  Петров Имя", first, flags=re.MULTILINE)) == 30
    assert "Показаны группы 1–30 из 35." in first and "hub dedupe --offset 30" in first and "hub dedupe --all" in first
    rest = hub("dedupe", "--offset", "30")
    assert len(re.findall(r"^  Петров Имя", rest, flags=re.MULTILINE)) == 5 and "--offset 35" not in rest
    assert len(re.findall(r"^  Петров Имя", hub("dedupe", "--all"), flags=re.MULTILINE)) == 35
    assert len(json.loads(hub("dedupe", "--json"))["suggestions"]) == 35
    assert len(json.loads(hub("dedupe", "--json", "--limit", "3"))["suggestions"]) == 3
    english = hub("dedupe", "--limit", "10", env=EN)
    assert "35 groups of contacts share a name only" in english and "Shown groups 1–10 of 35." in english
    assert "hub dedupe --offset 10 --limit 10" in english


def test_dedupe_points_at_a_pair_to_check_and_merges_it_in_russian(hub_db: HubDB) -> None:
    namesakes(hub_db, 1)
    shown = hub("dedupe")
    a, b = re.search(r"hub dedupe --merge (\d+) (\d+)", shown).groups()  # type: ignore[union-attr]
    assert f"hub contacts show {a}" in shown
    assert hub("dedupe", "--merge", a, b) == f"Контакт #{b} объединён с #{a}.\n"
    assert "Похожих нет" in hub("dedupe")


def test_a_refused_merge_is_one_line_in_the_readers_language(hub_db: HubDB) -> None:
    (cid,) = people(hub_db, 1)
    russian = CliRunner().invoke(cli, ["dedupe", "--merge", str(cid), str(cid)])
    assert russian.exit_code == 1 and russian.output == "Ошибка: контакт нельзя объединить с самим собой\n"
    english = CliRunner().invoke(cli, ["dedupe", "--merge", str(cid), "999999"], env=EN)
    assert english.exit_code == 1 and english.output == "Error: no contact with id 999999\n"


def test_a_shipped_segment_is_shown_in_the_readers_words_with_its_rule_as_written(hub_db: HubDB) -> None:
    russian = hub("segments", "show", "dormant_90d")
    assert "title: Не покупали 90 дней" in russian and "field: orders.last_at" in russian
    english = hub("segments", "show", "dormant_90d", env={"HUB_LANGUAGE": "en"})
    assert "title: Dormant for 90 days" in english and "Не покупали" not in english
    assert json.loads(hub("segments", "show", "dormant_90d", "--json"))["title"].startswith("Dormant for 90 days")

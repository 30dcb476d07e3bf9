"""An erased person leaves nothing readable: not in the database files, not in the outbox, not in any row.

The SQLite test is the user's whole path through the real `hub` command in a
fresh folder (init, import, consent, send through the file channel, erase),
then reads every byte of every file there. The other test runs on SQLite and
PostgreSQL and reads every row of every table (bytes on PostgreSQL's own disk
are its business: VACUUM and its WAL are the server's).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, select

import plugins.gdpr
import plugins.mailing
from hub import consent, messaging, sync
from hub import plugins as hub_plugins
from hub.records import ContactRecord
from plugins.mailing import file as file_channel
from tests.conftest import HubDB
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # erasure, read back from every row

HUB = str(Path(sys.executable).with_name("hub"))

EMAIL = "agrippina.ksenofontova@example.ru"
WORK_EMAIL = "a.ksenofontova@work.example"
PHONE_RAW = "8 (916) 555-12-34"
PHONE = "+79165551234"
SURNAME, FIRST_NAME = "Ксенофонтова", "Агриппина"
PROMO = {"code": "SPRING-10", "discount": 10, "expires_at": "2030-01-01"}
TRACES = (EMAIL, WORK_EMAIL, PHONE, PHONE_RAW, "9165551234", "555-12-34", SURNAME, FIRST_NAME)


def traces_in(data: bytes) -> list[str]:
    """Which of the person's values `data` holds, as UTF-8 (what SQLite, the .eml and the .txt files use).

    In any case: bytes.lower() folds only ASCII, so each Cyrillic value is also looked for
    as written, in lower and in upper case (name keys and search columns fold case).
    """
    lowered = data.lower()
    return [t for t in TRACES
            if t.lower().encode() in lowered or any(v.encode() in data for v in (t, t.lower(), t.upper()))]


def hub_cmd(folder: Path, *args: str) -> str:
    """Run the installed `hub` in `folder` with nothing but its defaults (hub.db, hub.toml, outbox/ there).

    Except SMS quiet hours: the hour the test runs at must not hold its SMS back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | {"HUB_QUIET_HOURS_SMS": "none"}
    done = subprocess.run([HUB, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("Фамилия;Имя;Телефон;Email\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_after_hub_gdpr_erase_no_byte_of_the_person_is_left_in_the_folder(tmp_path: Path) -> None:
    shop, inbox = tmp_path / "shop", tmp_path / "files"
    shop.mkdir()
    inbox.mkdir()

    hub_cmd(shop, "init")
    for name in ("hub.db", "hub.toml", "hub.db-wal", "hub.db-shm"):
        if (shop / name).exists() or name in ("hub.db", "hub.toml"):
            assert stat.S_IMODE((shop / name).stat().st_mode) == 0o600, name

    # Known first by email, then by phone, as two contacts; a third row with both merges them.
    hub_cmd(shop, "import", "contacts", str(write_csv(inbox / "shop.csv", [
        f"{SURNAME};{FIRST_NAME};;{EMAIL}",
        f"{SURNAME};{FIRST_NAME};{PHONE_RAW};{WORK_EMAIL}",
        "Петров;Иван;+7 903 111-22-33;ivan.petrov@example.ru",
    ])))
    hub_cmd(shop, "import", "contacts", str(write_csv(inbox / "crm.csv", [
        f"{SURNAME};{FIRST_NAME};{PHONE_RAW};{EMAIL}",
    ])))
    people = json.loads(hub_cmd(shop, "contacts", "list", "--json"))
    (person,) = [p for p in people if p["last_name"] == SURNAME]
    assert person["phones"] == [PHONE] and sorted(person["emails"]) == sorted([EMAIL, WORK_EMAIL])
    cid = str(person["id"])

    hub_cmd(shop, "consent", "set", cid, "email", "marketing", "granted", "--source", "form")
    hub_cmd(shop, "consent", "set", cid, "sms", "marketing", "granted", "--source", "form")
    hub_cmd(shop, "messages", "send", "welcome_email", "--contact", cid, "--purpose", "transactional")
    hub_cmd(shop, "messages", "send", "reactivation_sms", "--contact", cid, "--channel", "sms",
            "--promo-code", "SPRING-10", "--promo-discount", "10", "--promo-expires", "2030-01-01")
    written = sorted(p.name for p in (shop / "outbox").iterdir())
    assert [n.rsplit("-", 1)[1] for n in written] == ["email.eml", "sms.txt"]
    # Letters carry addresses and names: the outbox is the owner's alone, like hub.db.
    assert stat.S_IMODE((shop / "outbox").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (shop / "outbox").iterdir()} == {0o600}
    assert all(traces_in(p.read_bytes()) for p in (shop / "outbox").iterdir())
    everything = b"".join(p.read_bytes() for p in shop.rglob("*") if p.is_file())
    assert set(traces_in(everything)) == set(TRACES)  # the scan below does see them when they are there

    erased = hub_cmd(shop, "gdpr", "erase", cid, "--yes")
    assert f"Контакт №{cid} удалён" in erased and "читала базу данных" not in erased

    left = {str(p.relative_to(shop)): traces_in(p.read_bytes()) for p in shop.rglob("*") if p.is_file()}
    assert {name: found for name, found in left.items() if found} == {}
    assert "hub.db" in left and "hub.toml" in left
    assert not list((shop / "outbox").iterdir())  # the person's letters went; nobody else had any
    # Everyone else is still there, readable: the scan reads real data.
    assert "Петров".encode() in (shop / "hub.db").read_bytes()
    for name in ("hub.db", "hub.toml", "hub.db-wal", "hub.db-shm"):
        if (shop / name).exists():
            assert stat.S_IMODE((shop / name).stat().st_mode) == 0o600, name


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shop.mkdir()
    hub_cmd(shop, "init")
    os.chmod(shop / "hub.db", 0o640)
    hub_cmd(shop, "init")
    assert stat.S_IMODE((shop / "hub.db").stat().st_mode) == 0o640


# --- every row, on SQLite and PostgreSQL ---------------------------------------------------------------

@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    plugin_manager.register(plugins.gdpr, name="gdpr")
    plugin_manager.register(plugins.mailing, name="mailing")
    plugins.gdpr.register_commands(cli)
    return hub_db


def every_row(db: HubDB) -> str:
    """Every row of every table in the database, as text."""
    tables = MetaData()
    tables.reflect(db.engine)
    with db.engine.connect() as conn:
        return "\n".join(f"{t.name}: {conn.execute(select(t)).all()!r}" for t in tables.sorted_tables)


def test_no_row_and_no_outbox_file_keeps_the_erased_person(hub: HubDB) -> None:
    # hook:contact_erased (the mailing plugin deletes the file channel's copies)
    with hub.engine.begin() as conn:
        cid, other = sync.write_contacts(conn, [
            ContactRecord(source="shop", external_id="k1", first_name=FIRST_NAME, last_name=SURNAME,
                          emails=[EMAIL, WORK_EMAIL], phones=[PHONE_RAW]),
            ContactRecord(source="shop", external_id="p1", first_name="Иван", last_name="Петров",
                          emails=["ivan.petrov@example.ru"]),
        ], hub.settings, sync.Counts()).contact_ids
        for channel in ("email", "sms"):
            consent.record(conn, cid, channel, "marketing", "granted", source="form",
                           evidence={"address": EMAIL, "phone": PHONE_RAW})
        for who, template, channel in ((cid, "welcome_email", "email"), (cid, "birthday_sms", "sms"),
                                       (other, "welcome_email", "email")):
            messaging.create(conn, hub.settings, contact_id=who, channel=channel, template=template,
                             key=f"{template}:{who}", purpose="transactional", context={"promo": PROMO})
    assert messaging.dispatch(hub.engine, hub.settings).sent == 3
    outbox = file_channel.outbox_dir(hub.settings)
    mine = [outbox / "00000001-email.eml", outbox / "00000002-sms.txt"]
    assert all(traces_in(p.read_bytes()) for p in mine)
    assert set(traces_in(every_row(hub).encode())) == set(TRACES)

    result = CliRunner().invoke(cli, ["gdpr", "erase", str(cid), "--yes"])
    assert result.exit_code == 0, result.output

    assert traces_in(every_row(hub).encode()) == []
    assert sorted(p.name for p in outbox.iterdir()) == ["00000003-email.eml"]  # Иван keeps his letter
    assert "Иван".encode() in (outbox / "00000003-email.eml").read_bytes()


def test_the_file_channel_forgets_only_the_files_it_wrote_for_the_person(hub: HubDB) -> None:
    outbox = file_channel.outbox_dir(hub.settings)
    outbox.mkdir()
    stray = outbox / "notes.txt"
    stray.write_text(EMAIL, encoding="utf-8")
    with hub.engine.begin() as conn:
        (cid,) = sync.write_contacts(conn, [ContactRecord(source="shop", emails=[EMAIL])], hub.settings,
                                     sync.Counts()).contact_ids
        message = messaging.create(conn, hub.settings, contact_id=cid, channel="email", template="welcome_email",
                                   key="welcome", purpose="transactional")
    # A send cut off after the file was started but before the channel answered leaves a .part.
    part = outbox / (file_channel.file_name(message.id, "email") + ".part")
    part.write_text(EMAIL, encoding="utf-8")
    with hub.engine.begin() as conn:
        assert file_channel.forget_contact(conn, hub.settings, cid) == 1
        assert file_channel.forget_contact(conn, hub.settings, cid) == 0
    assert sorted(p.name for p in outbox.iterdir()) == ["notes.txt"]


def test_hub_sqlite_connections_overwrite_what_they_delete(sqlite_db: HubDB) -> None:
    # Builds of SQLite differ in their default; "FAST" would leave whole freed pages readable.
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1


def test_erase_says_when_a_reader_keeps_the_old_pages_in_the_wal(sqlite_db: HubDB) -> None:
    hub_plugins.get_pm().register(plugins.gdpr, name="gdpr")
    plugins.gdpr.register_commands(cli)
    wal = Path(sqlite_db.engine.url.database + "-wal")
    with sqlite_db.engine.begin() as conn:
        (cid,) = sync.write_contacts(conn, [ContactRecord(source="shop", emails=[EMAIL], phones=[PHONE_RAW])],
                                     sqlite_db.settings, sync.Counts()).contact_ids
    # Hub's one pooled connection gives up at once instead of waiting 30 s for the reader below.
    with sqlite_db.engine.connect() as conn:
        conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")
    assert sqlite_db.engine.pool.checkedin() == 1
    reader = sqlite3.connect(sqlite_db.engine.url.database)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM contacts").fetchone()  # a snapshot from before the erasure
        result = CliRunner().invoke(cli, ["gdpr", "erase", str(cid), "--yes"], env={"HUB_LANGUAGE": "en"})
        assert result.exit_code == 0, result.output
        assert "Another program was reading the database" in result.output
        assert traces_in(wal.read_bytes())
    finally:
        reader.close()
    again = CliRunner().invoke(cli, ["gdpr", "erase", str(cid)])
    assert "уже удалён" in again.output and "читала базу данных" not in again.output
    assert wal.stat().st_size == 0
    assert traces_in((wal.parent / "hub.db").read_bytes()) == []


def hub_at_a_terminal(folder: Path, *args: str, typed: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `hub` with its input from a terminal (a pseudo-terminal), `typed` typed at it."""
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    master, slave = pty.openpty()
    try:
        os.write(master, typed.encode() + b"\n")  # kept by the terminal until the command reads its line
        return subprocess.run([HUB, *args], cwd=folder, env=env, stdin=slave, capture_output=True, text=True,
                              timeout=300)
    finally:
        os.close(slave)
        os.close(master)


def test_erase_asks_at_a_terminal_and_refuses_without_one(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shop.mkdir()
    hub_cmd(shop, "init")
    hub_cmd(shop, "import", "contacts", str(write_csv(tmp_path / "shop.csv", [
        f"{SURNAME};{FIRST_NAME};;{EMAIL}", "Петров;Иван;;ivan.petrov@example.ru"])))
    ids = {p["last_name"]: str(p["id"]) for p in json.loads(hub_cmd(shop, "contacts", "list", "--json"))}
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}

    def names() -> set[str]:
        with sqlite3.connect(shop / "hub.db") as db:
            return {row[0] for row in db.execute("SELECT last_name FROM contacts WHERE last_name IS NOT NULL")}

    # A script (no terminal, no --yes) is refused in one line, and nothing is erased.
    piped = subprocess.run([HUB, "gdpr", "erase", ids[SURNAME]], cwd=shop, env=env, input="", capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 1 and piped.stdout == ""
    assert piped.stderr == (f"Ошибка: удаление контакта №{ids[SURNAME]} не отменить: запустите команду в терминале, "
                            "чтобы подтвердить его, или добавьте --yes\n")
    # At a terminal: a wrong answer erases nothing; the id (or ERASE) does.
    wrong = hub_at_a_terminal(shop, "gdpr", "erase", ids[SURNAME], typed="да")
    assert wrong.returncode == 1, wrong.stderr
    assert f"Контакт №{ids[SURNAME]} ({FIRST_NAME} {SURNAME}) будет удалён навсегда" in wrong.stderr
    assert f"Введите {ids[SURNAME]} или ERASE, чтобы удалить" in wrong.stderr
    assert "ничего не удалено" in wrong.stderr and names() == {SURNAME, "Петров"}
    done = hub_at_a_terminal(shop, "gdpr", "erase", ids[SURNAME], typed=ids[SURNAME])
    assert done.returncode == 0, done.stderr
    assert f"Контакт №{ids[SURNAME]} удалён" in done.stdout and names() == {"Петров"}
    by_word = hub_at_a_terminal(shop, "gdpr", "erase", ids["Петров"], typed="ERASE")
    assert by_word.returncode == 0, by_word.stderr
    assert names() == set()
    # Nothing left to lose: erasing again does not ask.
    again = subprocess.run([HUB, "gdpr", "erase", ids[SURNAME]], cwd=shop, env=env, input="", capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "уже удалён" in again.stdout

"""Signed links after merges: the old link acts on the survivor, or says nothing is held.

A letter goes out through a real SMTP server on loopback, its links are taken
from the letter, then the contact is merged away (by a sync, by an import,
by `hub dedupe --merge`, and through a chain of merges) and the old links are
followed the way a mail provider or a browser follows them.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import plugins.gdpr
import plugins.mailing
import workflows
from hub import consent, identity, importer, messaging, queue, sync
from hub.admin import create_app
from hub.config import load_settings
from hub.models import Contact, ContactMerge
from hub.records import ContactRecord
from plugins.gdpr import erasure, limits
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.public import PUBLIC, csrf_of, person, state
from tests.support.smtp import Mailbox
from workflows import nps
from workflows.models import Interaction

pytestmark = pytest.mark.both_databases  # links followed across merges


@pytest.fixture
def site(hub_db: HubDB, plugin_manager: Any, mailbox: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The public pages (gdpr, NPS) with mail going to the loopback SMTP server."""
    _, port = mailbox
    for name, value in {"HUB_SMTP_URL": f"smtp://127.0.0.1:{port}", "HUB_MAIL_FROM": "Лавка <shop@example.ru>",
                        "HUB_PUBLIC_URL": PUBLIC, "HUB_COMPANY_NAME": "Лавка"}.items():
        monkeypatch.setenv(name, value)
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.register(plugins.gdpr, name="gdpr")
    plugin_manager.register(workflows, name="workflows")
    hub_db.settings = load_settings()
    limits.reset()
    app = create_app(hub_db.settings)
    yield app
    queue.drain(timeout=60)
    limits.reset()


def send(db: HubDB, box: Mailbox, contact_id: int, template: str, key: str,
         purpose: str = "marketing") -> email.message.EmailMessage:
    before = len(box.received)
    row = messaging.send(db.engine, db.settings, contact_id=contact_id, channel="email", template=template, key=key,
                         purpose=purpose)
    assert row["status"] == "sent", row["error"]
    (got,) = box.received[before:]
    return email.message_from_bytes(got.data, policy=email.policy.default)  # type: ignore[return-value]


def body(letter: email.message.EmailMessage) -> str:
    return letter.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def path_of(letter: email.message.EmailMessage, kind: str) -> str:
    url = re.search(rf"{re.escape(PUBLIC)}/{kind}/\S+", body(letter)).group(0)  # type: ignore[union-attr]
    return urlsplit(url).path


def one_click_path(letter: email.message.EmailMessage) -> str:
    https = [p.strip(" <>") for p in letter["List-Unsubscribe"].split(",") if p.strip(" <>").startswith("https")]
    return urlsplit(https[0]).path


def exists(db: HubDB, contact_id: int) -> bool:
    with db.engine.connect() as conn:
        return conn.execute(select(Contact.id).where(Contact.id == contact_id)).first() is not None


# --- the ways two contacts become one ------------------------------------------------------

def merge_by_sync(db: HubDB, tmp: Path, survivor: int, gone: int, survivor_phone: str, gone_email: str) -> None:
    with db.engine.begin() as conn:
        sync.write_contacts(conn, [ContactRecord(source="bitrix24", external_id="77", emails=[gone_email],
                                                 phones=[survivor_phone])], db.settings, sync.Counts())


def merge_by_import(db: HubDB, tmp: Path, survivor: int, gone: int, survivor_phone: str, gone_email: str) -> None:
    path = tmp / "clients.csv"
    path.write_text(f"email;phone;first_name\n{gone_email};{survivor_phone};Анна\n", encoding="utf-8")
    report = importer.import_contacts(db.engine, db.settings, path)
    assert report.contacts_merged == 1, report


def merge_by_dedupe(db: HubDB, tmp: Path, survivor: int, gone: int, survivor_phone: str, gone_email: str) -> None:
    result = CliRunner().invoke(cli, ["dedupe", "--merge", str(survivor), str(gone)])
    assert result.exit_code == 0, result.output


MERGES: dict[str, Callable[..., None]] = {"sync": merge_by_sync, "import": merge_by_import, "dedupe": merge_by_dedupe}


@pytest.mark.parametrize("how", sorted(MERGES))
def test_an_old_unsubscribe_link_withdraws_the_survivor(hub_db: HubDB, site: Any, mailbox, tmp_path: Path,
                                                        how: str) -> None:
    box, _ = mailbox
    survivor = person(hub_db, phone="+7 916 100-00-01", granted=("email/marketing",), email_="anna.work@example.ru")
    gone = person(hub_db, email_="anna@example.ru", granted=("email/marketing",))
    letter = send(hub_db, box, gone, "welcome_email", "welcome:gone")
    MERGES[how](hub_db, tmp_path, survivor, gone, "+79161000001", "anna@example.ru")
    assert not exists(hub_db, gone) and state(hub_db, survivor)[("email", "marketing")] == "granted"

    client = site.test_client()
    page = client.get(one_click_path(letter))
    assert page.status_code == 200 and "Отписаться" in page.get_data(as_text=True)
    done = client.post(one_click_path(letter), data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert state(hub_db, survivor)[("email", "marketing")] == "withdrawn"
    with hub_db.engine.connect() as conn:
        (event,) = [e for e in consent.history(conn, survivor) if e["status"] == "withdrawn"]
    assert event["source"] == "unsubscribe_link"
    # The next campaign letter to the survivor, at either address, is suppressed.
    nxt = messaging.send(hub_db.engine, hub_db.settings, contact_id=survivor, channel="email",
                         template="welcome_email", key="welcome:after", purpose="marketing")
    assert nxt["status"] == "suppressed"
    assert len(box.received) == 1


@pytest.mark.parametrize("how", sorted(MERGES))
def test_the_old_preference_centre_shows_and_changes_the_survivor(hub_db: HubDB, site: Any, mailbox,
                                                                  tmp_path: Path, how: str) -> None:
    box, _ = mailbox
    survivor = person(hub_db, phone="+7 916 100-00-02", email_="boris.old@example.ru",
                      granted=("email/marketing", "email/news"))
    gone = person(hub_db, email_="boris@example.ru", granted=("email/marketing",))
    letter = send(hub_db, box, gone, "welcome_email", "welcome:boris")
    MERGES[how](hub_db, tmp_path, survivor, gone, "+79161000002", "boris@example.ru")

    client = site.test_client()
    prefs = path_of(letter, "preferences")
    page = client.get(prefs)
    assert page.status_code == 200 and 'value="email/news" checked' in page.get_data(as_text=True)
    saved = client.post(prefs, data={"csrf_token": csrf_of(page), "action": "unsubscribe_all"})
    assert saved.status_code == 200 and "Вы отписаны от всех рассылок" in saved.get_data(as_text=True)
    assert state(hub_db, survivor) == {("email", "marketing"): "withdrawn", ("email", "news"): "withdrawn"}
    nxt = messaging.send(hub_db.engine, hub_db.settings, contact_id=survivor, channel="email",
                         template="welcome_email", key="welcome:boris:after", purpose="marketing")
    assert nxt["status"] == "suppressed"


@pytest.mark.parametrize("how", sorted(MERGES))
def test_an_old_confirmation_link_confirms_for_the_survivor(hub_db: HubDB, site: Any, mailbox, tmp_path: Path,
                                                            how: str) -> None:
    box, _ = mailbox
    survivor = person(hub_db, phone="+7 916 100-00-03", email_="vera.old@example.ru")
    gone = person(hub_db, email_="vera@example.ru")
    letter = send(hub_db, box, gone, "double_opt_in_email", "doi:vera", purpose="transactional")
    MERGES[how](hub_db, tmp_path, survivor, gone, "+79161000003", "vera@example.ru")

    client = site.test_client()
    path = path_of(letter, "confirm")
    page = client.get(path)
    assert page.status_code == 200 and "Подтвердить подписку" in page.get_data(as_text=True)
    done = client.post(path, data={"csrf_token": csrf_of(page)})
    assert done.status_code == 200 and "Подписка подтверждена" in done.get_data(as_text=True)
    assert state(hub_db, survivor) == {("email", "marketing"): "granted"}
    with hub_db.engine.connect() as conn:
        assert consent.can_contact(conn, hub_db.settings, survivor, "email", "marketing").allowed


def test_links_follow_a_chain_of_merges(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    first = person(hub_db, email_="c@example.ru", granted=("email/marketing",))
    middle = person(hub_db, email_="b@example.ru", granted=("email/marketing",))
    last = person(hub_db, email_="a@example.ru", granted=("email/marketing",))
    letter = send(hub_db, box, last, "welcome_email", "welcome:chain")
    runner = CliRunner()
    assert runner.invoke(cli, ["dedupe", "--merge", str(middle), str(last)]).exit_code == 0
    assert runner.invoke(cli, ["dedupe", "--merge", str(first), str(middle)]).exit_code == 0
    with hub_db.engine.connect() as conn:
        assert identity.current_contact_id(conn, last) == first
        assert identity.current_contact_id(conn, middle) == first
        assert identity.current_contact_id(conn, first) == first
        assert identity.current_contact_id(conn, 10_000_000) is None
    client = site.test_client()
    assert client.post(one_click_path(letter), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert state(hub_db, first)[("email", "marketing")] == "withdrawn"


def test_a_link_to_someone_erased_says_nothing_is_held(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    survivor = person(hub_db, email_="d.old@example.ru", granted=("email/marketing",))
    gone = person(hub_db, email_="d@example.ru", granted=("email/marketing",))
    letter = send(hub_db, box, gone, "welcome_email", "welcome:erased")
    doi = send(hub_db, box, gone, "double_opt_in_email", "doi:erased", purpose="transactional")
    assert CliRunner().invoke(cli, ["dedupe", "--merge", str(survivor), str(gone)]).exit_code == 0
    erasure.erase(hub_db.engine, hub_db.settings, survivor)

    client = site.test_client()
    for path in (one_click_path(letter), path_of(letter, "preferences"), path_of(doi, "confirm")):
        page = client.get(path)
        assert page.status_code == 410, path
        assert "Мы не храним о вас никаких данных" in page.get_data(as_text=True)
    plain_post = client.post(one_click_path(letter), data={"List-Unsubscribe": "One-Click"})
    assert plain_post.status_code == 200 and "Nothing is held" in plain_post.get_data(as_text=True)
    with hub_db.engine.connect() as conn:
        assert consent.history(conn, survivor) == []


def test_a_survey_answer_from_before_a_merge_counts_for_the_survivor(hub_db: HubDB, site: Any) -> None:
    survivor = person(hub_db, email_="e.old@example.ru")
    gone = person(hub_db, email_="e@example.ru")
    link = nps.url(hub_db.settings, gone, None, 9)
    assert CliRunner().invoke(cli, ["dedupe", "--merge", str(survivor), str(gone)]).exit_code == 0
    client = site.test_client()
    page = client.get(urlsplit(link).path)
    assert page.status_code == 200 and "Ваша оценка" in page.get_data(as_text=True)
    with hub_db.engine.connect() as conn:
        rows = conn.execute(select(Interaction.contact_id, Interaction.value)).all()
    assert [tuple(r) for r in rows] == [(survivor, 9)]

    erasure.erase(hub_db.engine, hub_db.settings, survivor)
    again = client.get(urlsplit(nps.url(hub_db.settings, gone, None, 3)).path)
    assert again.status_code == 410 and "Мы не храним о вас никаких данных" in again.get_data(as_text=True)
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Interaction.id)).first() is None
        assert conn.execute(select(ContactMerge.id)).first() is not None

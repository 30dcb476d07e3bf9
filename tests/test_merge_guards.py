"""Merges by hand never involve an erased person or a pending signup's hidden placeholder.

A merge is logged and links follow the log (hub.identity.current_contact_id),
so merging an erased id into a live contact would let whoever holds the
erased person's old letter act on a stranger, and merging a live person into
an erased or hidden contact would bury them. Both doors are tried: the
command line (`hub dedupe --merge`) and the admin (`POST /contacts/merge`).
Also here: erasure takes a pending signup's letter out of the file channel's
outbox, `hub contacts show`/`hub consent show` of a merged-away or hidden id,
and the preference centre granting only on the channel its link proved.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

import plugins.gdpr
import plugins.mailing
from hub import consent, identity, links, queue, sync
from hub.admin import create_app
from hub.config import load_settings
from hub.hookspecs import hookimpl
from hub.models import Contact, ContactMerge
from hub.records import ContactRecord
from plugins.gdpr import erasure, preferences
from plugins.gdpr.models import ConsentRequest
from plugins.mailing import file as file_channel
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.admin import AdminEnv, client_as, post, text

pytestmark = pytest.mark.both_databases  # merges

PUBLIC = "https://hub.example.ru"
API_KEY = "site-backend-key-0123456789"


@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    plugin_manager.register(plugins.gdpr, name="gdpr")
    plugin_manager.register(plugins.mailing, name="mailing")
    plugins.gdpr.register_commands(cli)
    return hub_db


@pytest.fixture
def site(hub: HubDB, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The public pages with the file channel as the email channel (no SMTP server set)."""
    for name, value in {"HUB_PUBLIC_URL": PUBLIC, "HUB_COMPANY_NAME": "Цветочная лавка",
                        "HUB_MAIL_FROM": "Цветочная лавка <shop@example.ru>", "HUB_GDPR_API_KEY": API_KEY}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HUB_SMTP_URL", raising=False)
    hub.settings = load_settings()
    yield create_app(hub.settings)
    queue.drain(timeout=60)


@pytest.fixture(autouse=True)
def fresh_limits() -> Any:
    from plugins.gdpr import limits

    limits.reset()
    yield
    limits.reset()


def run_cli(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == code, result.output
    return result


def people(db: HubDB, *records: ContactRecord) -> list[int]:
    with db.engine.begin() as conn:
        return sync.write_contacts(conn, list(records), db.settings, sync.Counts()).contact_ids


def three(db: HubDB) -> tuple[int, int, int]:
    a, b, c = people(db, ContactRecord(source="t", first_name="Анна", emails=["anna@example.ru"]),
                     ContactRecord(source="t", first_name="Борис", emails=["boris@example.ru"]),
                     ContactRecord(source="t", first_name="Вера", phones=["+79161112233"]))
    return a, b, c


def merge_count(db: HubDB) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(ContactMerge)).scalar_one()


def live_ids(db: HubDB) -> set[int]:
    with db.engine.connect() as conn:
        return set(conn.execute(select(Contact.id)).scalars())


def sign_up(client: Any, address: str) -> dict[str, Any]:
    answer = client.post("/api/consent", json={"email": address, "topics": ["email/news"]},
                         headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    queue.drain(timeout=60)
    return answer.get_json()


def placeholder_of(db: HubDB, request_id: int) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(ConsentRequest.contact_id).where(ConsentRequest.id == request_id)).scalar_one()


# --- merges by hand ---------------------------------------------------------------------------

def test_the_command_line_refuses_to_merge_an_erased_contact_either_way(hub: HubDB) -> None:
    live, erased, _ = three(hub)
    erasure.erase(hub.engine, hub.settings, erased)
    before = merge_count(hub)
    for pair in ((live, erased), (erased, live)):
        result = run_cli("dedupe", "--merge", *map(str, pair), code=1)
        assert result.output == (f"Ошибка: контакт #{erased} удалён по запросу (стёрт): "
                                 "его нельзя объединять ни с кем\n")
    assert merge_count(hub) == before and {live, erased} <= live_ids(hub)
    with hub.engine.connect() as conn:
        assert identity.current_contact_id(conn, erased) is None
        assert identity.current_contact_id(conn, live) == live


def test_a_contact_aged_out_by_retention_is_not_merged_either(hub: HubDB) -> None:
    live, aged, _ = three(hub)
    with hub.engine.begin() as conn:
        erasure.anonymize(conn, hub.settings, aged, actor="retention")
    result = run_cli("dedupe", "--merge", str(aged), str(live), code=1)
    assert f"#{aged}" in result.output and len(result.output.splitlines()) == 1
    assert merge_count(hub) == 0


def test_a_signup_placeholder_is_never_merged_by_hand_but_its_own_click_still_merges_it(hub: HubDB, site: Any,
                                                                                         plugin_manager: Any) -> None:
    merges: list[tuple[int, int]] = []

    class Listener:
        @hookimpl
        def contact_merged(self, survivor_id: int, merged_id: int) -> None:
            merges.append((survivor_id, merged_id))

    plugin_manager.register(Listener())
    (known,) = people(hub, ContactRecord(source="t", first_name="Анна", emails=["anna@example.ru"]))
    asked = sign_up(site.test_client(), "anna@example.ru")
    placeholder = placeholder_of(hub, asked["request"])
    for pair in ((known, placeholder), (placeholder, known)):
        result = run_cli("dedupe", "--merge", *map(str, pair), code=1)
        assert result.output == (f"Ошибка: контакт #{placeholder} — скрытая неподтверждённая подписка: "
                                 "его нельзя объединять вручную\n")
    assert merge_count(hub) == 0

    letter = next(file_channel.outbox_dir(hub.settings).glob("*.eml")).read_text(encoding="utf-8")
    path = urlsplit(re.search(rf"{re.escape(PUBLIC)}/confirm/\S+", letter).group(0)).path  # type: ignore[union-attr]
    client = site.test_client()
    page = client.get(path)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    assert client.post(path, data={"csrf_token": token}).status_code == 200
    with hub.engine.connect() as conn:
        assert identity.current_contact_id(conn, placeholder) == known  # the signup's own merge
        assert consent.current(conn, known)[("email", "news")] == "granted"
    # The signup's merge told plugins, once, and the GDPR plugin moved its request to the person.
    assert merges == [(known, placeholder)]
    assert placeholder_of(hub, asked["request"]) == known


def test_the_admin_refuses_to_merge_an_erased_contact(admin_env: AdminEnv) -> None:
    ids = admin_env.ids
    erasure.erase(admin_env.engine, admin_env.settings, ids["petrov_2"])
    marketer = client_as(admin_env, "marketer")
    before = merge_count(admin_env.db)
    for survivor, other in ((ids["petrov_1"], ids["petrov_2"]), (ids["petrov_2"], ids["petrov_1"])):
        answer = post(marketer, "/contacts/merge", {"survivor": survivor, "other": other}, follow_redirects=True)
        assert f"контакт #{ids['petrov_2']} удалён по запросу (стёрт)" in text(answer)
    assert merge_count(admin_env.db) == before and {ids["petrov_1"], ids["petrov_2"]} <= live_ids(admin_env.db)


def test_the_admin_card_of_a_signup_placeholder_is_not_found(admin_env: AdminEnv) -> None:
    with admin_env.engine.begin() as conn:
        placeholder = conn.execute(Contact.__table__.insert().values(
            provenance={"created_from": identity.PLACEHOLDER}, deleted_at=dt.datetime.now(dt.timezone.utc),
        ).returning(Contact.__table__.c.id)).scalar_one()
    viewer = client_as(admin_env, "viewer")
    assert viewer.get(f"/contacts/{placeholder}").status_code == 404
    assert viewer.get(f"/contacts/{admin_env.ids['petrov_1']}").status_code == 200


def test_the_identity_path_never_picks_an_erased_contact_to_merge_with(hub: HubDB) -> None:
    live, erased, aged = three(hub)
    erasure.erase(hub.engine, hub.settings, erased)
    with hub.engine.begin() as conn:
        erasure.anonymize(conn, hub.settings, aged, actor="retention")
    # One record with the live person's email, the erased one's and the aged-out one's phone.
    ids = people(hub, ContactRecord(source="crm", emails=["anna@example.ru", "boris@example.ru"]),
                 ContactRecord(source="crm", emails=["anna@example.ru"], phones=["+79161112233"]))
    assert ids[0] is None  # refused: it carries an erased person's address
    assert ids[1] == live  # the aged-out phone is held by nobody now: it joins Анна, not the tombstone
    with hub.engine.connect() as conn:
        rows = conn.execute(select(ContactMerge.survivor_id, ContactMerge.merged_id)).all()
        assert not [r for r in rows if {erased, aged} & {r.survivor_id, r.merged_id}]
        assert identity.current_contact_id(conn, erased) is None and identity.current_contact_id(conn, aged) is None


def test_an_erased_ids_old_merge_log_leads_nowhere(hub: HubDB) -> None:
    # Data written before merges were guarded: an erased contact folded into a live one.
    live, erased, _ = three(hub)
    with hub.engine.begin() as conn:
        consent.record(conn, live, "email", "marketing", "granted", source="paper form")
    erasure.erase(hub.engine, hub.settings, erased)
    with hub.engine.begin() as conn:
        identity.merge_contacts(conn, live, erased, reason={"rule": "merged by hand"}, settings=hub.settings,
                                 actor="cli")
    with hub.engine.connect() as conn:
        assert identity.current_contact_id(conn, erased) is None
    # The erased person's old links act on nobody: the stranger keeps their subscription.
    assert not preferences.unsubscribe(hub.engine, erased, "email", "marketing", ip=None, user_agent=None,
                                       method="page")
    assert preferences.unsubscribe_all(hub.engine, hub.settings, erased, ip=None, user_agent=None) == []
    with hub.engine.connect() as conn:
        assert preferences.load(conn, hub.settings, erased) is None
        assert consent.current(conn, live)[("email", "marketing")] == "granted"


# --- the outbox after an erasure ----------------------------------------------------------------

def test_erasure_removes_a_pending_signups_letter_from_the_outbox(hub: HubDB, site: Any) -> None:
    (person, other) = people(hub, ContactRecord(source="t", first_name="Анна", emails=["anna@example.ru"]),
                             ContactRecord(source="t", first_name="Иван", emails=["ivan@example.ru"]))
    sign_up(site.test_client(), "anna@example.ru")
    sign_up(site.test_client(), "ivan@example.ru")
    outbox = file_channel.outbox_dir(hub.settings)

    def holding(address: str) -> list[Path]:
        return [p for p in outbox.iterdir() if address.encode() in p.read_bytes()]

    assert len(holding("anna@example.ru")) == 1 and len(holding("ivan@example.ru")) == 1
    run_cli("gdpr", "erase", str(person), "--yes")
    assert holding("anna@example.ru") == [] and len(holding("ivan@example.ru")) == 1  # Иван keeps his


# --- showing a merged-away or hidden id ---------------------------------------------------------

def test_show_commands_say_where_a_merged_contact_went(hub: HubDB) -> None:
    survivor, gone, _ = three(hub)
    run_cli("dedupe", "--merge", str(survivor), str(gone))
    line = f"Ошибка: контакт #{gone} объединён с #{survivor}, смотрите #{survivor}\n"
    assert run_cli("contacts", "show", str(gone), code=1).output == line
    assert run_cli("consent", "show", str(gone), code=1).output == line
    assert run_cli("contacts", "show", "999999", code=1).output == "Ошибка: нет контакта с id 999999\n"
    english = f"Error: contact #{gone} was merged into #{survivor}; see #{survivor}\n"
    assert run_cli("contacts", "show", str(gone), code=1, env={"HUB_LANGUAGE": "en"}).output == english
    assert f"#{survivor} " in run_cli("contacts", "show", str(survivor)).output


def test_show_commands_do_not_show_a_signup_placeholder(hub: HubDB, site: Any) -> None:
    asked = sign_up(site.test_client(), "new@example.ru")
    placeholder = placeholder_of(hub, asked["request"])
    for command in ("contacts", "consent"):
        result = run_cli(command, "show", str(placeholder), code=1)
        assert result.output == f"Ошибка: нет контакта с id {placeholder}\n"


# --- the preference centre grants only on the channel its link proved --------------------------

def preference_page(hub: HubDB, site: Any, contact_id: int) -> tuple[Any, str, str]:
    path = urlsplit(links.preferences_url(hub.settings, contact_id)).path
    client = site.test_client()
    body = client.get(path).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)  # type: ignore[union-attr]
    return client, path, token


def test_a_preference_link_cannot_grant_sms_or_calls(hub: HubDB, site: Any) -> None:
    (cid,) = people(hub, ContactRecord(source="t", emails=["anna@example.ru"], phones=["+79161112233"]))
    client, path, token = preference_page(hub, site, cid)
    saved = client.post(path, data={"csrf_token": token, "action": "save",
                                    "topic": ["sms/marketing", "phone/marketing", "email/news"]})
    assert saved.status_code == 200
    with hub.engine.connect() as conn:
        assert consent.current(conn, cid) == {("email", "news"): "granted"}  # the email topic only
        assert not consent.can_contact(conn, hub.settings, cid, "sms", "marketing").allowed

    body = saved.get_data(as_text=True)
    assert re.search(r'value="sms/marketing"[^>]* disabled', body)
    assert re.search(r'value="phone/news"[^>]* disabled', body)
    assert re.search(r'value="email/marketing"(?![^>]* disabled)', body)
    assert "Согласие на SMS и звонки даётся в магазине или по SMS" in body


def test_a_preference_link_still_withdraws_sms_given_at_the_shop(hub: HubDB, site: Any) -> None:
    (cid,) = people(hub, ContactRecord(source="t", emails=["anna@example.ru"], phones=["+79161112233"]))
    with hub.engine.begin() as conn:
        consent.record(conn, cid, "sms", "marketing", "granted", source="shop")
    client, path, token = preference_page(hub, site, cid)
    body = client.get(path).get_data(as_text=True)
    assert re.search(r'value="sms/marketing" checked>', body)  # granted: shown on, and can be switched off
    kept = client.post(path, data={"csrf_token": token, "action": "save", "topic": ["sms/marketing"]})
    assert "Изменений нет" in kept.get_data(as_text=True)
    client.post(path, data={"csrf_token": token, "action": "save", "topic": []})
    with hub.engine.connect() as conn:
        assert consent.current(conn, cid) == {("sms", "marketing"): "withdrawn"}
